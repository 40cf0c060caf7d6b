package authz

import (
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

		if _, err := buildSnapshot(mf, pf, 0); err != nil {
			t.Fatalf("buildSnapshot() error = %v for a policy the parser accepted", err)
		}
	})
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
