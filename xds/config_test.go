package xds

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

func TestInvalidConfigKeepsPushed(t *testing.T) {
	az := newFakeAuthz([2]string{testID("a"), testID("b")})
	s, _ := startServer(t, Config{Services: threeServices(), Authorizer: az, Issuer: newTestCA(t)})
	ctx := context.Background()
	if err := s.Rebuild(ctx); err != nil {
		t.Fatalf("Rebuild() = %v", err)
	}
	want := s.Status()

	tests := []struct {
		name    string
		change  func() error
		wantErr error
		wantMsg string
	}{
		{
			name: "policy names unknown service",
			change: func() error {
				az.mu.Lock()
				az.rules = []ConnectRule{{Subject: testID("a"), Object: ObjectPrefix + testID("ghost"), Source: "policy.csv:7"}}
				az.mu.Unlock()
				defer func() { az.mu.Lock(); az.rules = nil; az.mu.Unlock() }()
				return s.Rebuild(ctx)
			},
			wantErr: ErrUnknownService,
			wantMsg: `policy.csv:7: object "service/spiffe://example.org/ns/test/sa/ghost": no service has SPIFFE ID`,
		},
		{
			name: "policy subject unknown service",
			change: func() error {
				az.mu.Lock()
				az.rules = []ConnectRule{{Subject: testID("ghost"), Object: ObjectPrefix + testID("a"), Source: "policy.csv:9"}}
				az.mu.Unlock()
				defer func() { az.mu.Lock(); az.rules = nil; az.mu.Unlock() }()
				return s.Rebuild(ctx)
			},
			wantErr: ErrUnknownService,
			wantMsg: "policy.csv:9: subject",
		},
		{
			name: "port out of range",
			change: func() error {
				svcs := threeServices()
				svcs[1].Endpoints = []string{"127.0.0.1:70000"}
				return s.SetServices(ctx, svcs)
			},
			wantErr: ErrInvalidService,
			wantMsg: `services[1] "b": endpoints[0] "127.0.0.1:70000" is not ip:port`,
		},
		{
			name: "port zero",
			change: func() error {
				svcs := threeServices()
				svcs[0].Endpoints = []string{"127.0.0.1:0"}
				return s.SetServices(ctx, svcs)
			},
			wantErr: ErrInvalidService,
			wantMsg: "port 0 is invalid",
		},
		{
			name: "envoy app port missing",
			change: func() error {
				svcs := threeServices()
				svcs[2].AppPort = 0
				return s.SetServices(ctx, svcs)
			},
			wantErr: ErrInvalidService,
			wantMsg: "app port 0 is invalid",
		},
		{
			name: "local port taken by an app",
			change: func() error {
				svcs := threeServices()
				svcs[0].LocalPort = 8080
				return s.SetServices(ctx, svcs)
			},
			wantErr: ErrInvalidService,
			wantMsg: `local port 8080 is already the app port of "c"`,
		},
		{
			name: "local port used twice",
			change: func() error {
				svcs := threeServices()
				svcs[0].LocalPort = 15001
				svcs[1].LocalPort = 15001
				return s.SetServices(ctx, svcs)
			},
			wantErr: ErrInvalidService,
			wantMsg: `local port 15001 is already the local port of "a"`,
		},
		{
			name: "duplicate SPIFFE ID",
			change: func() error {
				svcs := threeServices()
				svcs[1].SPIFFEID = svcs[0].SPIFFEID
				return s.SetServices(ctx, svcs)
			},
			wantErr: ErrInvalidService,
			wantMsg: "duplicate SPIFFE ID",
		},
		{
			name: "foreign trust domain",
			change: func() error {
				svcs := threeServices()
				svcs[1].SPIFFEID = "spiffe://other.example/b"
				return s.SetServices(ctx, svcs)
			},
			wantErr: ErrInvalidService,
			wantMsg: "outside trust domain",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.change()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("change = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantMsg)
			}
			for _, node := range []string{testID("a"), testID("b"), testID("c")} {
				for _, typ := range resourceTypes {
					got, was := typeStatus(s.Status(), node, typ), typeStatus(want, node, typ)
					if got.Served != was.Served || got.Desired != was.Desired {
						t.Errorf("%s %s after rejected change: served %q desired %q, want %q %q", node, typ, got.Served, got.Desired, was.Served, was.Desired)
					}
				}
			}
		})
	}

	// Rule errors reach Status; a good build clears them.
	if err := s.Rebuild(ctx); err != nil {
		t.Fatalf("Rebuild() = %v", err)
	}
	if st := s.Status(); st.BuildError != "" {
		t.Errorf("Status().BuildError = %q after a good build, want empty", st.BuildError)
	}
	if typeStatus(s.Status(), testID("c"), resource.SecretType).Served == "" {
		t.Errorf("envoy node c has no SDS secrets served")
	}
}

func TestPolicyChangedDebounced(t *testing.T) {
	s, _ := startServer(t, Config{Services: threeServices(), Authorizer: newFakeAuthz(), Issuer: newTestCA(t), Debounce: 50 * time.Millisecond})
	for start := time.Now(); s.Status().Builds == 0; time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("first build did not happen")
		}
	}
	before := s.Status().Builds

	for range 20 {
		s.PolicyChanged()
	}
	for start := time.Now(); s.Status().Builds == before; time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("no build after PolicyChanged")
		}
	}
	time.Sleep(150 * time.Millisecond) // room for a second, unwanted build
	if got := s.Status().Builds - before; got != 1 {
		t.Errorf("builds after 20 PolicyChanged calls = %d, want 1", got)
	}
}

func TestCandidatesFromRules(t *testing.T) {
	services := []Service{
		{Name: "a", SPIFFEID: "spiffe://example.org/ns/shop/sa/a"},
		{Name: "b", SPIFFEID: "spiffe://example.org/ns/shop/sa/b"},
		{Name: "c", SPIFFEID: "spiffe://example.org/ns/bank/sa/c"},
	}
	a, b, c := services[0].SPIFFEID, services[1].SPIFFEID, services[2].SPIFFEID
	tests := []struct {
		name  string
		rules []ConnectRule
		want  map[string][]string // target -> candidate callers
	}{
		{"exact", []ConnectRule{{Subject: a, Object: "service/" + b}}, map[string][]string{b: {a}}},
		{"subject pattern", []ConnectRule{{Subject: "spiffe://example.org/ns/shop/*", Object: "service/" + c}}, map[string][]string{c: {a, b}}},
		{"object pattern", []ConnectRule{{Subject: c, Object: "service/spiffe://example.org/ns/shop/*"}}, map[string][]string{a: {c}, b: {c}}},
		{"everything", []ConnectRule{{Subject: "*", Object: "*"}}, map[string][]string{a: {a, b, c}, b: {a, b, c}, c: {a, b, c}}},
		{"unexpanded role", []ConnectRule{{Subject: "role:ops", Object: "service/" + a}}, map[string][]string{a: {a, b, c}}},
		{"unknown target", []ConnectRule{{Subject: a, Object: "service/spiffe://example.org/ghost"}}, map[string][]string{}},
		{"duplicates", []ConnectRule{{Subject: a, Object: "service/" + b}, {Subject: "*", Object: "service/" + b}}, map[string][]string{b: {a, b, c}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string][]string{}
			for target, callers := range candidates(tt.rules, services) {
				for _, svc := range callers {
					got[target] = append(got[target], svc.SPIFFEID)
				}
				slices.Sort(got[target])
			}
			for _, ids := range tt.want {
				slices.Sort(ids)
			}
			if !maps.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("candidates(%v) = %v, want %v", tt.rules, got, tt.want)
			}
		})
	}
}

func TestRemovedServiceGetsNothing(t *testing.T) {
	s, _ := startServer(t, Config{Services: threeServices(), Authorizer: newFakeAuthz(), Issuer: newTestCA(t)})
	ctx := context.Background()
	if err := s.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.SetServices(ctx, threeServices()[:2]); err != nil {
		t.Fatalf("SetServices() = %v", err)
	}
	if _, err := s.cache.GetSnapshot(testID("c")); err == nil {
		t.Error("removed service c still has a snapshot")
	}
	for _, n := range s.Status().Nodes {
		if n.Node == testID("c") {
			t.Errorf("Status() still lists removed node c: %+v", n)
		}
	}
	s.mu.Lock()
	_, held := s.svids[testID("c")]
	s.mu.Unlock()
	if held {
		t.Error("removed Envoy service c still holds an SVID")
	}
}
