package authz_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"ward.dev/ward/authz"
)

func TestLint(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		line   int    // line of the expected finding
		want   string // substring of its message
	}{
		{"clean", "p, role:admin, *, *, *, allow\ng, spiffe://ward.test/admin, role:admin, *\n", 0, ""},
		{"csv syntax", "p, \"spiffe://ward.test/a, dev, db/x, read, allow\n", 1, "missing closing quote"},
		{"unknown ptype", "p2, spiffe://ward.test/a, dev, db/x, read, allow\n", 1, "unknown line type"},
		{"field count", "p, spiffe://ward.test/a, dev, db/x, read\n", 1, "has 4 fields, want 5"},
		{"bad effect", "p, spiffe://ward.test/a, dev, db/x, read, permit\n", 1, "effect \"permit\""},
		{"inner wildcard", "p, spiffe://ward.test/ns/*/sa/web, dev, db/x, read, allow\n", 1, "only as the last character"},
		{"unknown verb", "p, spiffe://ward.test/a, dev, db/x, raed, allow\n", 1, "not a known verb"},
		{"duplicate", "p, spiffe://ward.test/a, dev, db/x, read, allow\n\np, spiffe://ward.test/a, dev, db/x, read, allow\n", 3, "duplicate of line 1"},
		{"shadowed deny", "p, spiffe://ward.test/ns/shop/*, *, db/*, *, deny\np, spiffe://ward.test/ns/shop/sa/web, dev, db/x, read, deny\n", 2, "already covers"},
		{"allow never matches", "p, spiffe://ward.test/ns/shop/sa/web, dev, x509/self, issue, allow\np, spiffe://ward.test/ns/shop/*, *, x509/*, issue, deny\n", 1, "never takes effect"},
		{"role no identity holds", "p, role:ghost, dev, db/x, read, allow\n", 1, "no identity holds role:ghost"},
		{"role cycle", "g, spiffe://ward.test/a, role:a, dev\ng, role:a, role:b, dev\ng, role:b, role:a, *\n", 2, "role cycle: role:a -> role:b -> role:a"},
		{"role chain too deep", deepChain(12), 1, "deeper than 10 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modelPath, policyPath := writeFiles(t, tt.policy)
			findings := authz.Lint(modelPath, policyPath)
			if tt.want == "" {
				if len(findings) != 0 {
					t.Errorf("Lint() = %v, want no findings", findings)
				}
				return
			}
			wantSource := policyPath + ":" + strconv.Itoa(tt.line)
			for _, f := range findings {
				if f.Source == wantSource && strings.Contains(f.Message, tt.want) {
					return
				}
			}
			t.Errorf("Lint() = %v, want a finding at %s containing %q", findings, wantSource, tt.want)
		})
	}
}

func TestLintBrokenModel(t *testing.T) {
	modelPath, policyPath := writeFiles(t, "p, role:admin, *, *, *, allow\n")
	broken := strings.Replace(authz.DefaultModel, "r = sub, dom, obj, act", "r = sub, obj, act", 1)
	if err := os.WriteFile(modelPath, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	findings := authz.Lint(modelPath, policyPath)
	if len(findings) == 0 || findings[0].Source != modelPath+":3" {
		t.Errorf("Lint() = %v, want a first finding at %s:3", findings, modelPath)
	}
}

func TestLintMissingFile(t *testing.T) {
	modelPath, policyPath := writeFiles(t, "")
	if err := os.Remove(policyPath); err != nil {
		t.Fatal(err)
	}
	findings := authz.Lint(modelPath, policyPath)
	if len(findings) != 1 || findings[0].Source != policyPath || !strings.Contains(findings[0].Message, "no such file") {
		t.Errorf("Lint(missing policy) = %v, want one finding for %s", findings, policyPath)
	}
}

func TestLintDefaults(t *testing.T) {
	modelPath, policyPath, err := authz.WriteDefaults(t.TempDir(), "ward.test", "spiffe://ward.test/admin", "dev")
	if err != nil {
		t.Fatal(err)
	}
	if findings := authz.Lint(modelPath, policyPath); len(findings) != 0 {
		t.Errorf("Lint(defaults) = %v, want no findings", findings)
	}
	if filepath.Base(policyPath) != authz.PolicyFileName {
		t.Errorf("WriteDefaults() policy = %s, want %s", policyPath, authz.PolicyFileName)
	}
}

// deepChain returns a policy whose identity reaches role:rN only through a
// chain of n roles.
func deepChain(n int) string {
	var b strings.Builder
	b.WriteString("g, spiffe://ward.test/deep, role:r1, *\n")
	for i := 1; i < n; i++ {
		b.WriteString("g, role:r" + strconv.Itoa(i) + ", role:r" + strconv.Itoa(i+1) + ", *\n")
	}
	return b.String()
}
