package authz_test

import (
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"ward.dev/ward/authz"
)

const (
	webID      = "spiffe://ward.test/ns/shop/sa/web"
	adminID    = "spiffe://ward.test/admin"
	basePolicy = "p, role:admin, *, *, *, allow\ng, " + adminID + ", role:admin, *\n"
)

func TestReloadAppliesNewPolicy(t *testing.T) {
	modelPath, policyPath := writeFiles(t, basePolicy)
	e, err := authz.New(modelPath, policyPath)
	if err != nil {
		t.Fatal(err)
	}
	updates, stop := e.Subscribe()
	defer stop()

	if d := e.Decide(webID, "dev", "db/orders", "read"); d.Allowed {
		t.Fatalf("Decide(web) before reload = allowed, want denied")
	}
	writePolicy(t, policyPath, basePolicy+"p, "+webID+", dev, db/orders, read, allow\n")
	if err := e.Reload(); err != nil {
		t.Fatalf("Reload() error = %v", err)
	}

	if d := e.Decide(webID, "dev", "db/orders", "read"); !d.Allowed || d.Source != "policy.csv:3" {
		t.Errorf("Decide(web) after reload = %+v, want allowed by policy.csv:3", d)
	}
	if v := e.Version(); v != 2 {
		t.Errorf("Version() = %d, want 2", v)
	}
	select {
	case v := <-updates:
		if v != 2 {
			t.Errorf("Subscribe() sent %d, want 2", v)
		}
	default:
		t.Errorf("Subscribe() sent nothing after Reload")
	}
}

func TestReloadKeepsPolicyOnError(t *testing.T) {
	tests := []struct {
		name      string
		model     string // "" keeps the default model
		policy    string
		wantWhere string // "model" or "policy", with the line after a colon
	}{
		{"bad effect", "", basePolicy + "p, " + webID + ", dev, db/x, read, alow\n", "policy:3"},
		{"bad csv", "", "p, role:admin, *, *, *, allow\np, \"x, dev\n", "policy:2"},
		{"unknown ptype", "", "q, a, b\n" + basePolicy, "policy:1"},
		{"changed request definition", strings.Replace(authz.DefaultModel, "sub, dom, obj, act\n", "sub, obj, act\n", 1), basePolicy, "model:3"},
		{"broken matcher", strings.Replace(authz.DefaultModel, "keyMatch(r.sub, p.sub)", "keyMatch(r.sub, p.sub", 1), basePolicy, "model:15"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modelPath, policyPath := writeFiles(t, basePolicy)
			e, err := authz.New(modelPath, policyPath)
			if err != nil {
				t.Fatal(err)
			}
			updates, stop := e.Subscribe()
			defer stop()

			if tt.model != "" {
				writePolicy(t, modelPath, tt.model)
			}
			writePolicy(t, policyPath, tt.policy)
			err = e.Reload()
			if !errors.Is(err, authz.ErrInvalidPolicy) {
				t.Fatalf("Reload() error = %v, want ErrInvalidPolicy", err)
			}
			file, line, _ := strings.Cut(tt.wantWhere, ":")
			where := policyPath + ":" + line
			if file == "model" {
				where = modelPath + ":" + line
			}
			if !strings.Contains(err.Error(), where) {
				t.Errorf("Reload() error = %q, want it to name %s", err, where)
			}

			if d := e.Decide(adminID, "prod", "policy", "reload"); !d.Allowed {
				t.Errorf("Decide(admin) after failed reload = %+v, want the old policy's allow", d)
			}
			if v := e.Version(); v != 1 {
				t.Errorf("Version() after failed reload = %d, want 1", v)
			}
			select {
			case v := <-updates:
				t.Errorf("Subscribe() sent %d after a failed reload, want nothing", v)
			default:
			}
		})
	}
}

func TestReloadMissingFile(t *testing.T) {
	modelPath, policyPath := writeFiles(t, basePolicy)
	e, err := authz.New(modelPath, policyPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(policyPath); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(); err == nil || !strings.Contains(err.Error(), policyPath) {
		t.Errorf("Reload() error = %v, want one naming %s", err, policyPath)
	}
	if d := e.Decide(adminID, "prod", "policy", "reload"); !d.Allowed {
		t.Errorf("Decide(admin) after failed reload = %+v, want allowed", d)
	}
}

// TestDecideDuringReload runs decisions while the policy flips between two
// versions; run with -race. No decision may fail, and the admin line, which
// both versions contain, must allow throughout.
func TestDecideDuringReload(t *testing.T) {
	policyA := basePolicy + "p, " + webID + ", dev, db/a, read, allow\n"
	policyB := basePolicy + "p, " + webID + ", dev, db/b, read, allow\n"
	modelPath, policyPath := writeFiles(t, policyA)
	e, err := authz.New(modelPath, policyPath, authz.WithCacheSize(64))
	if err != nil {
		t.Fatal(err)
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				a := e.Decide(webID, "dev", "db/a", "read")
				b := e.Decide(webID, "dev", "db/b", "read")
				admin := e.Decide(adminID, "dev", "db/a", "read")
				if !admin.Allowed || strings.HasPrefix(a.Reason, "authorization failed") || strings.HasPrefix(b.Reason, "authorization failed") {
					select {
					case errs <- a.Reason + " / " + b.Reason + " / " + admin.Reason:
					default:
					}
				}
			}
		})
	}

	for i := range 20 {
		policy := policyA
		if i%2 == 0 {
			policy = policyB
		}
		writePolicy(t, policyPath, policy)
		if err := e.Reload(); err != nil {
			t.Errorf("Reload() error = %v", err)
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Errorf("Decide during Reload: %s", msg)
	}
	if v := e.Version(); v != 21 {
		t.Errorf("Version() = %d, want 21", v)
	}
}

func writePolicy(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestReloadLogs(t *testing.T) {
	var buf strings.Builder
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	modelPath, policyPath := writeFiles(t, basePolicy)
	e := newEnforcerAt(t, modelPath, policyPath, authz.WithLogger(logger))
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}

	logged := buf.String()
	for _, want := range []string{"msg=\"policy loaded\" version=1", "msg=\"policy loaded\" version=2", "policy_file=" + policyPath, "policy_lines=1", "role_lines=1"} {
		if !strings.Contains(logged, want) {
			t.Errorf("log = %q, want it to contain %q", logged, want)
		}
	}
}

// TestReloadDropsRole checks that role lookups remembered for one policy
// version do not survive into the next.
func TestReloadDropsRole(t *testing.T) {
	withRole := basePolicy + "g, " + webID + ", role:admin, prod\n"
	modelPath, policyPath := writeFiles(t, withRole)
	e := newEnforcerAt(t, modelPath, policyPath, authz.WithCacheSize(0))
	if d := e.Decide(webID, "prod", "db/orders", "read"); !d.Allowed {
		t.Fatalf("Decide(web) with role:admin = %+v, want allowed", d)
	}

	writePolicy(t, policyPath, basePolicy)
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(webID, "prod", "db/orders", "read"); d.Allowed {
		t.Errorf("Decide(web) after its role was removed = %+v, want denied", d)
	}
}
