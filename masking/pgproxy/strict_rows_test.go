package pgproxy_test

import (
	"strings"
	"testing"
)

// TestStrictModeComparesOutputs checks that strict mode counts an output
// column as read when the statement sorts, groups or deduplicates by it
// without naming it: by position, with a plain DISTINCT, or with a set
// operation that compares rows.
func TestStrictModeComparesOutputs(t *testing.T) {
	f := startProxy(t, "strict: true\n")
	rejected := []string{
		"SELECT customer_id, email FROM customer ORDER BY 2",
		"SELECT phone, count(*) FROM customer GROUP BY 1",
		"SELECT DISTINCT ON (2) customer_id, email FROM customer",
		"SELECT DISTINCT email FROM customer",
		"SELECT email FROM customer INTERSECT SELECT 'luisg@embraer.com.br'",
		"SELECT email FROM customer EXCEPT SELECT 'luisg@embraer.com.br'",
	}
	for _, q := range rejected {
		out, err := f.psql(t, "tester", testerPW, q)
		if err == nil || !strings.Contains(out, "strict mode") {
			t.Errorf("psql %q = %v %q, want a strict-mode rejection", q, err, out)
		}
	}

	allowed := []string{
		"SELECT customer_id, email FROM customer WHERE customer_id < 3 ORDER BY customer_id",
		"SELECT email FROM customer WHERE customer_id < 3 UNION ALL SELECT 'x'",
	}
	for _, q := range allowed {
		if out, err := f.psql(t, "tester", testerPW, q); err != nil {
			t.Errorf("psql %q: %v\n%s", q, err, out)
		}
	}
}
