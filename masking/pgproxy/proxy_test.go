package pgproxy_test

import (
	"strings"
	"testing"
)

func TestSmoke(t *testing.T) {
	f := startProxy(t, "")
	out, err := f.psql(t, "tester", testerPW, "SELECT email, total FROM customer JOIN invoice USING (customer_id) LIMIT 3")
	t.Logf("%s %v", out, err)
	out, err = f.psql(t, "tester", testerPW, "SELECT email FROM customer LIMIT 3")
	t.Logf("%s %v", out, err)
	t.Log(strings.Count(f.logs.String(), "\n"))
}
