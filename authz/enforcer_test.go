package authz_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ward.dev/ward/authz"
)

const testTD = "ward.test"

// writeFiles writes the default model and the given policy into a new
// temporary directory and returns their paths.
func writeFiles(t testing.TB, policy string) (modelPath, policyPath string) {
	t.Helper()
	dir := t.TempDir()
	modelPath = filepath.Join(dir, "model.conf")
	policyPath = filepath.Join(dir, "policy.csv")
	if err := os.WriteFile(modelPath, []byte(authz.DefaultModel), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(policyPath, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	return modelPath, policyPath
}

func newEnforcer(t testing.TB, policy string, opts ...authz.Option) *authz.Enforcer {
	t.Helper()
	modelPath, policyPath := writeFiles(t, policy)
	e, err := authz.New(modelPath, policyPath, opts...)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	return e
}

const decidePolicy = `# test policy
p, role:admin, *, *, *, allow
g, spiffe://ward.test/admin, role:admin, *

p, spiffe://ward.test/ns/shop/*, dev, x509/self, issue, allow
p, spiffe://ward.test/ns/shop/*, dev, jwt/self, issue, allow
p, spiffe://ward.test/ns/shop/sa/web, prod, db/orders-readonly, issue, allow
p, spiffe://ward.test/ns/shop/sa/web, prod, db/orders-*, issue, allow
p, spiffe://ward.test/ns/shop/sa/web, prod, db/orders-admin, issue, deny

p, role:support, prod, column/public.customer.*, unmask, allow
p, role:support, prod, column/public.customer.card, unmask, deny
g, spiffe://ward.test/ns/support/sa/console, role:support, prod
g, spiffe://ward.test/ns/support/sa/lead, role:lead, *
g, role:lead, role:support, *

p, spiffe://ward.test/ns/shop/sa/bad, *, *, *, deny
g, spiffe://ward.test/ns/shop/sa/bad, role:admin, *
`

func TestDecide(t *testing.T) {
	e := newEnforcer(t, decidePolicy)
	const (
		admin   = "spiffe://ward.test/admin"
		web     = "spiffe://ward.test/ns/shop/sa/web"
		cart    = "spiffe://ward.test/ns/shop/sa/cart"
		console = "spiffe://ward.test/ns/support/sa/console"
		lead    = "spiffe://ward.test/ns/support/sa/lead"
		bad     = "spiffe://ward.test/ns/shop/sa/bad"
	)
	tests := []struct {
		name               string
		sub, dom, obj, act string
		allowed            bool
		source             string
	}{
		{"admin anything", admin, "prod", "db/x", "revoke", true, "policy.csv:2"},
		{"admin other domain", admin, "qa", "policy", "reload", true, "policy.csv:2"},
		{"self x509 issue", web, "dev", "x509/" + web, "issue", true, "policy.csv:5"},
		{"self jwt issue", cart, "dev", "jwt/" + cart, "issue", true, "policy.csv:6"},
		{"other's x509 denied", web, "dev", "x509/" + cart, "issue", false, ""},
		{"self wrong domain", web, "prod", "x509/" + web, "issue", false, ""},
		{"self wrong action", web, "dev", "x509/" + web, "revoke", false, ""},
		{"exact object", web, "prod", "db/orders-readonly", "issue", true, "policy.csv:7"},
		{"prefix object", web, "prod", "db/orders-write", "issue", true, "policy.csv:8"},
		{"explicit deny wins", web, "prod", "db/orders-admin", "issue", false, "policy.csv:9"},
		{"role in domain", console, "prod", "column/public.customer.email", "unmask", true, "policy.csv:11"},
		{"role deny wins", console, "prod", "column/public.customer.card", "unmask", false, "policy.csv:12"},
		{"role not in domain", console, "staging", "column/public.customer.email", "unmask", false, ""},
		{"inherited role", lead, "prod", "column/public.customer.email", "unmask", true, "policy.csv:11"},
		{"deny beats admin role", bad, "prod", "db/x", "issue", false, "policy.csv:17"},
		{"unknown subject", "spiffe://ward.test/ns/x/sa/y", "prod", "db/x", "issue", false, ""},
		{"role name as subject", "role:admin", "prod", "db/x", "issue", false, ""},
		{"empty action", admin, "prod", "db/x", "", false, ""},
		{"wildcard domain request", admin, "*", "db/x", "issue", false, ""},
		{"dot segment in subject", "spiffe://ward.test/ns/shop/../admin", "dev", "x509/spiffe://ward.test/ns/shop/../admin", "issue", false, ""},
		{"dot segment in object", web, "prod", "db/orders-x/../../admin", "issue", false, ""},
		{"control character", admin, "prod", "db/x\n", "issue", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Decide(tt.sub, tt.dom, tt.obj, tt.act)
			if d.Allowed != tt.allowed {
				t.Errorf("Decide(%s, %s, %s, %s).Allowed = %v (%s), want %v", tt.sub, tt.dom, tt.obj, tt.act, d.Allowed, d.Reason, tt.allowed)
			}
			if d.Source != tt.source {
				t.Errorf("Decide(%s, %s, %s, %s).Source = %q, want %q", tt.sub, tt.dom, tt.obj, tt.act, d.Source, tt.source)
			}
			if d.Source != "" && !strings.HasSuffix(d.Reason, d.Source) {
				t.Errorf("Decide(...).Reason = %q, want it to name %s", d.Reason, d.Source)
			}
		})
	}
}

// TestDecideInvalidRequest sends malformed requests from the admin, whom the
// policy otherwise allows everything, and expects each to be rejected as
// invalid before Casbin evaluates it.
func TestDecideInvalidRequest(t *testing.T) {
	e := newEnforcer(t, decidePolicy)
	const admin = "spiffe://ward.test/admin"
	tests := []struct {
		name               string
		sub, dom, obj, act string
	}{
		{"empty subject", "", "prod", "db/x", "issue"},
		{"empty domain", admin, "", "db/x", "issue"},
		{"empty object", admin, "prod", "", "issue"},
		{"wildcard domain", admin, "*", "db/x", "issue"},
		{"wildcard action", admin, "prod", "db/x", "*"},
		{"role as subject", "role:admin", "prod", "db/x", "issue"},
		{"pattern as subject", "spiffe://ward.test/*", "prod", "db/x", "issue"},
		{"space in object", admin, "prod", "db/x y", "issue"},
		{"unicode space in object", admin, "prod", "db/x\u00a0", "issue"},
		{"control character", admin, "prod", "db/x\n", "issue"},
		{"invalid utf-8", admin, "prod", "db/\xff", "issue"},
		{"oversized object", admin, "prod", "db/" + strings.Repeat("x", 5000), "issue"},
		{"dot segment", admin, "prod", "db/a/../b", "issue"},
		{"x509/self as object", admin, "prod", "x509/self", "issue"},
		{"jwt/self as object", admin, "prod", "jwt/self", "issue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Decide(tt.sub, tt.dom, tt.obj, tt.act)
			if d.Allowed || !strings.HasPrefix(d.Reason, "invalid request: ") {
				t.Errorf("Decide(%q, %q, %q, %q) = %+v, want denied as an invalid request", tt.sub, tt.dom, tt.obj, tt.act, d)
			}
		})
	}
}

func TestDecideReasons(t *testing.T) {
	e := newEnforcer(t, decidePolicy)
	d := e.Decide("spiffe://ward.test/admin", "prod", "db/x", "issue")
	if d.Rule != "p, role:admin, *, *, *, allow" {
		t.Errorf("Decide(admin).Rule = %q, want the admin line as written", d.Rule)
	}
	if d.Reason != "allowed by policy.csv:2" {
		t.Errorf("Decide(admin).Reason = %q, want %q", d.Reason, "allowed by policy.csv:2")
	}
	d = e.Decide("spiffe://ward.test/nobody", "dev", "x509/spiffe://ward.test/nobody", "issue")
	want := "no rule allows issue on x509/spiffe://ward.test/nobody in dev (default deny)"
	if d.Reason != want || d.Rule != "" || d.Source != "" {
		t.Errorf("Decide(nobody) = %+v, want Reason %q and no rule", d, want)
	}
}

func TestNewInvalidPolicy(t *testing.T) {
	modelPath, policyPath := writeFiles(t, "p, role:admin, *, *, *, allow\np, a, b, c, d, alow\n")
	_, err := authz.New(modelPath, policyPath)
	if !errors.Is(err, authz.ErrInvalidPolicy) {
		t.Fatalf("New() error = %v, want ErrInvalidPolicy", err)
	}
	if !strings.Contains(err.Error(), policyPath+":2") {
		t.Errorf("New() error = %q, want it to name %s:2", err, policyPath)
	}
}

func newEnforcerAt(t testing.TB, modelPath, policyPath string, opts ...authz.Option) *authz.Enforcer {
	t.Helper()
	e, err := authz.New(modelPath, policyPath, opts...)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	return e
}

func TestWriteDefaults(t *testing.T) {
	dir := t.TempDir()
	modelPath, policyPath, err := authz.WriteDefaults(dir, "ward.test", "spiffe://ward.test/admin", "dev")
	if err != nil {
		t.Fatalf("WriteDefaults() error = %v", err)
	}
	for _, p := range []string{modelPath, policyPath} {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o644 {
			t.Errorf("WriteDefaults() wrote %s with mode %o, want 644", p, info.Mode().Perm())
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("WriteDefaults() left %d files in the directory, want 2", len(entries))
	}

	e := newEnforcerAt(t, modelPath, policyPath)
	const web = "spiffe://ward.test/ns/shop/sa/web"
	tests := []struct {
		name               string
		sub, dom, obj, act string
		allowed            bool
	}{
		{"admin anything", "spiffe://ward.test/admin", "prod", "db/orders", "revoke", true},
		{"shop issues own x509", web, "dev", "x509/" + web, "issue", true},
		{"shop renews own jwt", web, "dev", "jwt/" + web, "renew", true},
		{"shop revokes own x509", web, "dev", "x509/" + web, "revoke", false},
		{"shop in prod", web, "prod", "x509/" + web, "issue", false},
		{"shop issues another's x509", web, "dev", "x509/spiffe://ward.test/ns/shop/sa/cart", "issue", false},
		{"other namespace", "spiffe://ward.test/ns/pay/sa/api", "dev", "x509/spiffe://ward.test/ns/pay/sa/api", "issue", false},
		{"other trust domain", "spiffe://evil.test/ns/shop/sa/web", "dev", "x509/spiffe://evil.test/ns/shop/sa/web", "issue", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := e.Decide(tt.sub, tt.dom, tt.obj, tt.act); d.Allowed != tt.allowed {
				t.Errorf("Decide(%s, %s, %s, %s) = %+v, want Allowed %v", tt.sub, tt.dom, tt.obj, tt.act, d, tt.allowed)
			}
		})
	}

	// A second call keeps the files the operator may have edited.
	if err := os.WriteFile(policyPath, []byte(basePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := authz.WriteDefaults(dir, "other.test", "spiffe://other.test/admin", "dev"); err != nil {
		t.Fatalf("WriteDefaults() again error = %v", err)
	}
	if got, _ := os.ReadFile(policyPath); string(got) != basePolicy {
		t.Errorf("WriteDefaults() replaced an existing policy file")
	}
}

func TestWriteDefaultsRejectsBadInput(t *testing.T) {
	tests := []struct{ name, td, admin, domain string }{
		{"trust domain with slash", "ward.test/x", "spiffe://ward.test/admin", "dev"},
		{"admin not spiffe", "ward.test", "admin", "dev"},
		{"admin with comma", "ward.test", "spiffe://ward.test/a,b", "dev"},
		{"wildcard domain", "ward.test", "spiffe://ward.test/admin", "*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, _, err := authz.WriteDefaults(dir, tt.td, tt.admin, tt.domain); err == nil {
				t.Errorf("WriteDefaults(%q, %q, %q) error = nil, want an error", tt.td, tt.admin, tt.domain)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("WriteDefaults() wrote %d files after rejecting its input", len(entries))
			}
		})
	}
}

// TestCustomMatcher checks that a model with another matcher still loads
// and decides by evaluating every line.
func TestCustomMatcher(t *testing.T) {
	modelPath, policyPath := writeFiles(t, "p, spiffe://ward.test/a, dev, db/x, read, allow\n")
	custom := strings.Replace(authz.DefaultModel, "(p.act == \"*\" || r.act == p.act)", "r.act == p.act", 1)
	if err := os.WriteFile(modelPath, []byte(custom), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnforcerAt(t, modelPath, policyPath)
	if d := e.Decide("spiffe://ward.test/a", "dev", "db/x", "read"); !d.Allowed || d.Source != "policy.csv:1" {
		t.Errorf("Decide() = %+v, want allowed by policy.csv:1", d)
	}
	if d := e.Decide("spiffe://ward.test/a", "dev", "db/y", "read"); d.Allowed {
		t.Errorf("Decide(db/y) = %+v, want denied", d)
	}
}

// TestDecideCasbinError checks that an error inside Casbin denies the
// request and goes to the log, not into the Decision.
func TestDecideCasbinError(t *testing.T) {
	const sub = "spiffe://ward.test/a"
	modelPath, policyPath := writeFiles(t, "p, "+sub+", dev, db/(, read, allow\n")
	custom := strings.Replace(authz.DefaultModel, "keyMatch(r.obj, p.obj)", "regexMatch(r.obj, p.obj)", 1)
	if err := os.WriteFile(modelPath, []byte(custom), 0o644); err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	e := newEnforcerAt(t, modelPath, policyPath, authz.WithLogger(slog.New(slog.NewTextHandler(&logged, nil))))

	d := e.Decide(sub, "dev", "db/x", "read")
	if d.Allowed || !strings.HasPrefix(d.Reason, "authorization failed") || strings.Contains(d.Reason, "goroutine") {
		t.Errorf("Decide() = %+v, want denied with a short failure reason", d)
	}
	if !strings.Contains(logged.String(), "authorization failed") || !strings.Contains(logged.String(), "subject="+sub) {
		t.Errorf("log = %q, want the failure with the subject", logged.String())
	}
}
