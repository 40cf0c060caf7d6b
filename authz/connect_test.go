package authz_test

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"ward.dev/ward/authz"
)

const (
	shopWeb    = "spiffe://ward.test/ns/shop/sa/web"
	shopOrders = "spiffe://ward.test/ns/shop/sa/orders"
	console    = "spiffe://ward.test/ns/support/sa/console"
	lead       = "spiffe://ward.test/ns/support/sa/lead"
)

func TestConnectRules(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		domain string
		want   []authz.ConnectRule
	}{
		{
			name:   "exact line",
			policy: "p, " + shopWeb + ", prod, service/" + shopOrders + ", connect, allow\n",
			domain: "prod",
			want:   []authz.ConnectRule{{Subject: shopWeb, Object: "service/" + shopOrders, Source: "policy.csv:1"}},
		},
		{
			name:   "other domain left out",
			policy: "p, " + shopWeb + ", dev, service/" + shopOrders + ", connect, allow\n",
			domain: "prod",
		},
		{
			name:   "domain and action wildcards",
			policy: "p, " + shopWeb + ", *, service/*, connect, allow\np, spiffe://ward.test/ns/shop/*, prod, *, *, allow\n",
			domain: "prod",
			want: []authz.ConnectRule{
				{Subject: shopWeb, Object: "service/*", Source: "policy.csv:1"},
				{Subject: "spiffe://ward.test/ns/shop/*", Object: "*", Source: "policy.csv:2"},
			},
		},
		{
			name:   "other actions and deny lines left out",
			policy: "p, " + shopWeb + ", prod, service/" + shopOrders + ", read, allow\np, " + shopWeb + ", prod, service/" + shopOrders + ", connect, deny\n",
			domain: "prod",
		},
		{
			name: "role expanded transitively",
			policy: "p, role:support, prod, service/" + shopOrders + ", connect, allow\n" +
				"g, " + console + ", role:support, prod\n" +
				"g, " + lead + ", role:lead, *\n" +
				"g, role:lead, role:support, *\n",
			domain: "prod",
			want: []authz.ConnectRule{
				{Subject: console, Object: "service/" + shopOrders, Source: "policy.csv:1"},
				{Subject: lead, Object: "service/" + shopOrders, Source: "policy.csv:1"},
			},
		},
		{
			name: "role granted in another domain",
			policy: "p, role:support, *, service/" + shopOrders + ", connect, allow\n" +
				"g, " + console + ", role:support, dev\n" +
				"g, " + lead + ", role:support, *\n",
			domain: "prod",
			want:   []authz.ConnectRule{{Subject: lead, Object: "service/" + shopOrders, Source: "policy.csv:1"}},
		},
		{
			name:   "role cycle",
			policy: "p, role:a, prod, service/*, connect, allow\ng, role:a, role:b, prod\ng, role:b, role:a, prod\ng, " + shopWeb + ", role:b, prod\n",
			domain: "prod",
			want:   []authz.ConnectRule{{Subject: shopWeb, Object: "service/*", Source: "policy.csv:1"}},
		},
		{
			name:   "role without members",
			policy: "p, role:nobody, prod, service/*, connect, allow\n",
			domain: "prod",
		},
		{
			name:   "subjects that cannot be a SPIFFE ID left out",
			policy: "p, alice, prod, service/*, connect, allow\np, ali*, prod, service/*, connect, allow\np, spi*, prod, service/*, connect, allow\np, *, prod, service/*, connect, allow\n",
			domain: "prod",
			want: []authz.ConnectRule{
				{Subject: "spi*", Object: "service/*", Source: "policy.csv:3"},
				{Subject: "*", Object: "service/*", Source: "policy.csv:4"},
			},
		},
		{
			name:   "default policy admin role",
			policy: basePolicy,
			domain: "prod",
			want:   []authz.ConnectRule{{Subject: adminID, Object: "*", Source: "policy.csv:1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnforcer(t, tt.policy)
			if got := e.ConnectRules(tt.domain); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ConnectRules(%q) = %+v, want %+v", tt.domain, got, tt.want)
			}
		})
	}
}

// TestConnectRulesCustomMatcher checks that a model with another matcher
// lists one rule matching every pair, because its lines may mean anything.
func TestConnectRulesCustomMatcher(t *testing.T) {
	modelPath, policyPath := writeFiles(t, "p, "+shopWeb+", prod, service/"+shopOrders+", connect, allow\n")
	custom := strings.Replace(authz.DefaultModel, "(p.act == \"*\" || r.act == p.act)", "r.act == p.act", 1)
	if err := os.WriteFile(modelPath, []byte(custom), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnforcerAt(t, modelPath, policyPath)

	got := e.ConnectRules("prod")
	if len(got) != 1 || got[0].Subject != "*" || got[0].Object != "*" || !strings.HasPrefix(got[0].Source, modelPath+":") {
		t.Errorf("ConnectRules(prod) = %+v, want one rule * on * from %s", got, modelPath)
	}
}

// TestConnectRulesCoverDecide checks the contract a mesh relies on: every
// connect request that Decide allows is matched by a listed rule from the
// line that allowed it.
func TestConnectRulesCoverDecide(t *testing.T) {
	for seed := range uint64(3) {
		g := newRandomPolicy(seed, 1500)
		e := newEnforcer(t, g.text)
		allowed := 0
		for _, domain := range []string{"prod", "qa"} {
			rules := e.ConnectRules(domain)
			for _, caller := range g.ids {
				for _, target := range g.ids {
					d := e.Decide(caller, domain, "service/"+target, "connect")
					if !d.Allowed {
						continue
					}
					allowed++
					if !covered(rules, caller, "service/"+target, d.Source) {
						t.Fatalf("seed %d: ConnectRules(%q) has no rule from %s for %s -> %s", seed, domain, d.Source, caller, target)
					}
				}
			}
		}
		if allowed == 0 {
			t.Errorf("seed %d: Decide allowed no connect request, so the test proves nothing", seed)
		}
	}
}

// covered reports whether a rule from source matches the request the way
// DefaultModel's keyMatch does.
func covered(rules []authz.ConnectRule, subject, object, source string) bool {
	for _, r := range rules {
		if r.Source == source && keyMatch(subject, r.Subject) && keyMatch(object, r.Object) {
			return true
		}
	}
	return false
}

func keyMatch(s, pattern string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(s, prefix)
	}
	return s == pattern
}

func TestReloadCheck(t *testing.T) {
	const valid = basePolicy + "p, " + shopWeb + ", prod, service/" + shopOrders + ", connect, allow\n"
	unknown := errors.New("unknown service")
	check := func(candidate authz.RuleSource) error {
		for _, r := range candidate.ConnectRules("prod") {
			if r.Object == "service/spiffe://ward.test/ns/shop/sa/ghost" {
				return errors.Join(unknown, errors.New(r.Source))
			}
		}
		return nil
	}

	modelPath, policyPath := writeFiles(t, basePolicy)
	e := newEnforcerAt(t, modelPath, policyPath)
	e.SetReloadCheck(check)

	writePolicy(t, policyPath, valid)
	if err := e.Reload(); err != nil {
		t.Fatalf("Reload(valid) error = %v", err)
	}
	if v := e.Version(); v != 2 {
		t.Fatalf("Version() after valid reload = %d, want 2", v)
	}

	writePolicy(t, policyPath, valid+"p, "+shopWeb+", prod, service/spiffe://ward.test/ns/shop/sa/ghost, connect, allow\n")
	err := e.Reload()
	if !errors.Is(err, unknown) || !errors.Is(err, authz.ErrInvalidPolicy) || !strings.Contains(err.Error(), "policy.csv:4") {
		t.Fatalf("Reload(ghost) error = %v, want the check's error naming policy.csv:4, wrapped in ErrInvalidPolicy", err)
	}
	if v := e.Version(); v != 2 {
		t.Errorf("Version() after rejected reload = %d, want 2", v)
	}
	if got := len(e.ConnectRules("prod")); got != 2 {
		t.Errorf("len(ConnectRules(prod)) after rejected reload = %d, want 2 from the previous policy", got)
	}

	e.SetReloadCheck(nil)
	if err := e.Reload(); err != nil {
		t.Errorf("Reload(ghost) without a check error = %v, want nil", err)
	}
}
