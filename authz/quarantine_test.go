package authz_test

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuarantine(t *testing.T) {
	const (
		agent = "spiffe://ward.test/ns/infra/sa/agent"
		cart  = "spiffe://ward.test/ns/shop/sa/cart"
	)
	policy := basePolicy +
		"p, spiffe://ward.test/ns/shop/*, prod, *, *, allow\n" +
		"g, " + agent + ", role:admin, *\n"
	e := newEnforcer(t, policy)
	updates, stop := e.Subscribe()
	defer stop()

	e.Quarantine(webID, "compromised host")
	if v := <-updates; v != 1 {
		t.Errorf("Subscribe() after Quarantine sent %d, want the current version 1", v)
	}

	tests := []struct {
		name               string
		sub, dom, obj, act string
		quarantined        bool
	}{
		{"as subject", webID, "prod", "db/orders", "read", true},
		{"as subject with a self object", webID, "prod", "x509/" + webID, "issue", true},
		{"connect to it", cart, "prod", "service/" + webID, "connect", true},
		{"admin issues its x509", agent, "prod", "x509/" + webID, "issue", true},
		{"admin issues its jwt", agent, "prod", "jwt/" + webID, "issue", true},
		{"admin revokes its leases", agent, "prod", "lease/" + webID, "revoke", false},
		{"other workload", cart, "prod", "db/orders", "read", false},
		{"similar prefix", cart, "prod", "service/" + webID + "2", "connect", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Decide(tt.sub, tt.dom, tt.obj, tt.act)
			if tt.quarantined {
				if d.Allowed || d.Reason != "quarantined: compromised host" || d.Rule != "" {
					t.Errorf("Decide(%s, %s, %s, %s) = %+v, want denied with Reason %q", tt.sub, tt.dom, tt.obj, tt.act, d, "quarantined: compromised host")
				}
				return
			}
			if !d.Allowed {
				t.Errorf("Decide(%s, %s, %s, %s) = %+v, want allowed", tt.sub, tt.dom, tt.obj, tt.act, d)
			}
		})
	}

	got := e.Quarantined()
	if len(got) != 1 || got[webID] != "compromised host" {
		t.Errorf("Quarantined() = %v, want only %s", got, webID)
	}
	got[cart] = "changed by caller"
	if _, ok := e.Quarantined()[cart]; ok {
		t.Errorf("Quarantined() returned the enforcer's own map, want a copy")
	}

	e.Release(webID)
	<-updates
	if d := e.Decide(webID, "prod", "db/orders", "read"); !d.Allowed {
		t.Errorf("Decide(web) after Release = %+v, want allowed", d)
	}
	if len(e.Quarantined()) != 0 {
		t.Errorf("Quarantined() after Release = %v, want empty", e.Quarantined())
	}
}

func TestQuarantineBeatsCache(t *testing.T) {
	e := newEnforcer(t, basePolicy)
	if d := e.Decide(adminID, "prod", "policy", "reload"); !d.Allowed {
		t.Fatalf("Decide(admin) = %+v, want allowed", d)
	}
	e.Quarantine(adminID, "stolen key")
	if d := e.Decide(adminID, "prod", "policy", "reload"); d.Allowed || !strings.HasPrefix(d.Reason, "quarantined: ") {
		t.Errorf("Decide(admin) after Quarantine = %+v, want quarantined even though cached", d)
	}
}

func TestSubscribeLatestWins(t *testing.T) {
	modelPath, policyPath := writeFiles(t, basePolicy)
	e := newEnforcerAt(t, modelPath, policyPath)
	updates, stop := e.Subscribe()

	for range 3 {
		if err := e.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	if v := <-updates; v != 4 {
		t.Errorf("Subscribe() after three reloads sent %d, want only the latest, 4", v)
	}
	select {
	case v := <-updates:
		t.Errorf("Subscribe() sent a second value %d, want one", v)
	default:
	}

	stop()
	stop() // a second call does nothing
	if _, open := <-updates; open {
		t.Errorf("channel still open after unsubscribe")
	}
	if err := e.Reload(); err != nil { // must not send on the closed channel
		t.Fatal(err)
	}
}

func TestQuarantineCleansReason(t *testing.T) {
	e := newEnforcer(t, basePolicy)
	e.Quarantine(webID, "line one\nline two\x00"+strings.Repeat("é", 200))

	reason := e.Quarantined()[webID]
	if strings.ContainsAny(reason, "\n\x00") {
		t.Errorf("Quarantined()[web] = %q, want no control characters", reason)
	}
	if len(reason) > 256 || !utf8.ValidString(reason) {
		t.Errorf("Quarantined()[web] is %d bytes (valid UTF-8: %v), want at most 256 and valid", len(reason), utf8.ValidString(reason))
	}
	if d := e.Decide(webID, "prod", "db/x", "read"); d.Reason != "quarantined: "+reason {
		t.Errorf("Decide(web).Reason = %q, want the cleaned reason", d.Reason)
	}
}
