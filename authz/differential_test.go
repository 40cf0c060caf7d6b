package authz_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/util"

	"ward.dev/ward/authz"
)

// newPlainCasbin returns Casbin's own enforcer over the same files, read by
// Casbin's file adapter, with domain * in g lines matching every domain.
func newPlainCasbin(t testing.TB, modelPath, policyPath string) *casbin.Enforcer {
	t.Helper()
	ref, err := casbin.NewEnforcer(modelPath, policyPath)
	if err != nil {
		t.Fatalf("casbin.NewEnforcer() error = %v", err)
	}
	ref.AddNamedDomainMatchingFunc("g", "keyMatch", util.KeyMatch)
	return ref
}

// TestDecideMatchesPlainCasbin holds the indexed enforcer equal to a plain
// Casbin enforcer that evaluates every line: the same allow or deny, and the
// same deciding line.
func TestDecideMatchesPlainCasbin(t *testing.T) {
	// Plain Casbin takes milliseconds per request on 10,000 lines, so the
	// large policy gets fewer requests than the small one.
	cases := []struct {
		seed            uint64
		lines, requests int
	}{
		{seed: 1, lines: 10000, requests: 2000},
		{seed: 2, lines: 1000, requests: 2000},
	}
	if testing.Short() || raceEnabled {
		cases = []struct {
			seed            uint64
			lines, requests int
		}{
			{seed: 1, lines: 10000, requests: 100},
			{seed: 2, lines: 1000, requests: 300},
		}
	}

	for _, c := range cases {
		seed, lines, requests := c.seed, c.lines, c.requests
		gen := newRandomPolicy(seed, lines)
		modelPath, policyPath := writeFiles(t, gen.text)
		ref := newPlainCasbin(t, modelPath, policyPath)
		cold, err := authz.New(modelPath, policyPath, authz.WithCacheSize(0))
		if err != nil {
			t.Fatalf("New() error = %v", err)
		}
		warm, err := authz.New(modelPath, policyPath)
		if err != nil {
			t.Fatalf("New() error = %v", err)
		}

		allowed, denied := 0, 0
		for range requests {
			req := gen.request()
			want, explain, err := ref.EnforceEx(req[0], req[1], req[2], req[3])
			if err != nil {
				t.Fatalf("casbin EnforceEx(%v) error = %v", req, err)
			}
			wantRule := ""
			if len(explain) > 0 {
				wantRule = "p, " + strings.Join(explain, ", ")
			}

			for name, e := range map[string]*authz.Enforcer{"cold": cold, "warm": warm} {
				for range 2 { // the second call of warm hits the cache
					got := e.Decide(req[0], req[1], req[2], req[3])
					if got.Allowed != want || got.Rule != wantRule {
						t.Fatalf("seed %d %s: Decide(%q) = %v by %q, want %v by %q", seed, name, req, got.Allowed, got.Rule, want, wantRule)
					}
				}
			}
			if want {
				allowed++
			} else if wantRule != "" {
				denied++
			}
		}

		// The comparison means little unless both effects occur often.
		if allowed < requests/10 || denied < requests/50 {
			t.Errorf("seed %d: %d allowed and %d explicitly denied of %d requests, want more of each", seed, allowed, denied, requests)
		}
		t.Logf("seed %d: %d lines, %d requests: %d allowed, %d explicitly denied", seed, lines, requests, allowed, denied)
	}
}

// TestDecideConcurrent makes the same decisions from several goroutines
// that share one snapshot, its evaluator and Casbin's role manager;
// run with -race.
func TestDecideConcurrent(t *testing.T) {
	gen := newRandomPolicy(3, 1000)
	modelPath, policyPath := writeFiles(t, gen.text)
	e := newEnforcerAt(t, modelPath, policyPath, authz.WithCacheSize(0))

	requests := make([][4]string, 400)
	want := make([]authz.Decision, len(requests))
	for i := range requests {
		requests[i] = gen.request()
		want[i] = e.Decide(requests[i][0], requests[i][1], requests[i][2], requests[i][3])
	}

	var wg sync.WaitGroup
	mismatches := make(chan string, 4)
	for w := range 4 {
		wg.Go(func() {
			for j := range requests {
				i := (j + w*97) % len(requests)
				r := requests[i]
				if got := e.Decide(r[0], r[1], r[2], r[3]); got != want[i] {
					select {
					case mismatches <- fmt.Sprintf("Decide(%q) = %+v, want %+v", r, got, want[i]):
					default:
					}
					return
				}
			}
		})
	}
	wg.Wait()
	close(mismatches)
	for m := range mismatches {
		t.Error(m)
	}
}
