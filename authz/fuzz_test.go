package authz

import (
	"log/slog"
	"strings"
	"testing"
)

// FuzzParsePolicy checks that the policy parser never panics, that what it
// accepts is valid and reads back the same when written out again, and that
// Casbin accepts every policy the parser accepts. Seeds are in
// testdata/fuzz/FuzzParsePolicy.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte("p, role:admin, *, *, *, allow\ng, spiffe://ward.test/admin, role:admin, *\n"))
	f.Add([]byte("# comment\n\np, \"spiffe://ward.test/a\", dev, \"db/x,y\", read, deny\r\n"))
	f.Add([]byte("p, spiffe://ward.test/ns/shop/*, dev, x509/self, issue, allow\n"))

	mf, err := parseModel("model.conf", []byte(DefaultModel))
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		pf, problems := parsePolicy("policy.csv", data)
		if (pf == nil) == (len(problems) == 0) {
			t.Fatalf("parsePolicy() = %v with %d problems, want exactly one of them", pf != nil, len(problems))
		}
		if pf == nil {
			for _, p := range problems {
				if p.msg == "" || p.line < 0 {
					t.Errorf("parsePolicy() problem %+v has no message or a negative line", p)
				}
			}
			return
		}

		var again strings.Builder
		for _, r := range append(pf.rules, pf.roles...) {
			if msg := validateRule(r); msg != "" {
				t.Fatalf("parsePolicy() accepted line %d: %s", r.line, msg)
			}
			again.WriteString(r.ptype)
			for _, f := range r.fields {
				again.WriteString(`, "` + strings.ReplaceAll(f, `"`, `""`) + `"`)
			}
			again.WriteString("\n")
		}
		pf2, problems := parsePolicy("policy.csv", []byte(again.String()))
		if len(problems) > 0 {
			t.Fatalf("parsePolicy(written out) = %v, want the accepted lines to read back", problems)
		}
		if len(pf2.rules) != len(pf.rules) || len(pf2.roles) != len(pf.roles) {
			t.Fatalf("parsePolicy(written out) has %d+%d lines, want %d+%d", len(pf2.rules), len(pf2.roles), len(pf.rules), len(pf.roles))
		}
		for i := range pf.rules {
			if pf.rules[i].key() != pf2.rules[i].key() {
				t.Fatalf("line %d reads back as %q, want %q", i, pf2.rules[i].key(), pf.rules[i].key())
			}
		}

		snap, err := buildSnapshot(mf, pf, 0)
		if err != nil {
			t.Fatalf("buildSnapshot() error = %v for a policy the parser accepted", err)
		}
		snap.logger = slog.New(slog.DiscardHandler)

		// The index must decide every request as Casbin's Enforce over the
		// whole policy does. Requests are built from the policy's own lines
		// so that some of them match.
		for _, req := range requestsFor(pf) {
			if checkRequest(req[0], req[1], req[2], req[3]) != "" {
				continue
			}
			got := snap.evaluate(req[0], req[1], req[2], req[3])
			want, explain, err := snap.enforcer.EnforceEx(req[0], req[1], req[2], req[3])
			if err != nil {
				t.Fatalf("EnforceEx(%q) error = %v", req, err)
			}
			wantRule := ""
			if len(explain) > 0 {
				i, ok := snap.ruleIndex(explain)
				if !ok {
					t.Fatalf("EnforceEx(%q) explained by %q, which is no line of the policy", req, explain)
				}
				wantRule = pf.rules[i].text
			}
			if got.Allowed != want || got.Rule != wantRule {
				t.Fatalf("evaluate(%q) = %+v, want allowed %v by %q", req, got, want, wantRule)
			}
		}
	})
}

// requestsFor returns a few requests built from the first lines of pf.
func requestsFor(pf *policyFile) [][4]string {
	concrete := func(pattern, fallback string) string {
		if pattern == wildcard || pattern == "" {
			return fallback
		}
		if prefix, ok := strings.CutSuffix(pattern, wildcard); ok {
			return prefix + "x"
		}
		return pattern
	}

	var out [][4]string
	for i, r := range pf.rules {
		if i == 8 {
			break
		}
		sub := concrete(r.fields[0], "spiffe://fuzz.test/a")
		for _, g := range pf.roles {
			if g.fields[1] == r.fields[0] {
				sub = g.fields[0]
				break
			}
		}
		dom := concrete(r.fields[1], "dev")
		obj := concrete(r.fields[2], "db/x")
		switch r.fields[2] {
		case selfX509:
			obj = "x509/" + sub
		case selfJWT:
			obj = "jwt/" + sub
		}
		act := concrete(r.fields[3], "read")
		out = append(out, [4]string{sub, dom, obj, act}, [4]string{sub, "other", obj, act})
	}
	return out
}

// FuzzParseModel checks that the model parser never panics and that every
// model it rejects is reported as ErrInvalidPolicy.
func FuzzParseModel(f *testing.F) {
	f.Add([]byte(DefaultModel))
	f.Add([]byte("[request_definition]\nr = sub, dom, obj, act\n[matchers]\nm = \\\n r.sub == p.sub\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := parseModel("model.conf", data); err != nil && !strings.Contains(err.Error(), ErrInvalidPolicy.Error()) {
			t.Errorf("parseModel() error = %v, want one wrapping ErrInvalidPolicy", err)
		}
	})
}
