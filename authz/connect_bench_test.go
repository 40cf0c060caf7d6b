package authz_test

import (
	"fmt"
	"strings"
	"testing"

	"ward.dev/ward/authz"
)

// BenchmarkConnectRules measures listing the connect rules of a mesh
// policy with 1,000 services: two connect lines per service, and 50 roles
// of 20 members that may each connect to one service. The baseline is one
// cold Decide per listed rule, the least a mesh build does with the list.
func BenchmarkConnectRules(b *testing.B) {
	const services = 1000
	id := func(i int) string { return fmt.Sprintf("spiffe://ward.test/ns/n%d/sa/s%d", i%50, i) }
	var policy strings.Builder
	for i := range services {
		fmt.Fprintf(&policy, "p, %s, prod, service/%s, connect, allow\n", id(i), id((i+1)%services))
		fmt.Fprintf(&policy, "p, %s, prod, service/%s, connect, allow\n", id(i), id((i+7)%services))
	}
	for r := range 50 {
		fmt.Fprintf(&policy, "p, role:r%d, *, service/%s, connect, allow\n", r, id(r))
		for m := range 20 {
			fmt.Fprintf(&policy, "g, %s, role:r%d, *\n", id(r*20+m), r)
		}
	}
	modelPath, policyPath := writeFiles(b, policy.String())
	e, err := authz.New(modelPath, policyPath, authz.WithCacheSize(0))
	if err != nil {
		b.Fatal(err)
	}
	rules := e.ConnectRules("prod")
	if len(rules) != 2*services+50*20 {
		b.Fatalf("ConnectRules(prod) listed %d rules, want %d", len(rules), 2*services+50*20)
	}

	b.Run("services=1000/connect-rules", func(b *testing.B) {
		for b.Loop() {
			e.ConnectRules("prod")
		}
		b.ReportMetric(float64(len(rules)), "rules")
	})

	b.Run("services=1000/decide-each-rule(baseline)", func(b *testing.B) {
		for b.Loop() {
			for _, r := range rules {
				e.Decide(r.Subject, "prod", r.Object, "connect")
			}
		}
		b.ReportMetric(float64(len(rules)), "rules")
	})
}
