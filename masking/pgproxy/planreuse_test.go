package pgproxy_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestPlanReuseFollowsPolicy runs one statement repeatedly, so later runs
// reuse the session's result plan, and checks that a quarantine and its
// release change the result at once.
func TestPlanReuseFollowsPolicy(t *testing.T) {
	f := startProxy(t, "")
	ctx := context.Background()
	emails := direct(t, f.pg, "SELECT email FROM customer ORDER BY customer_id")
	conn, err := pgx.Connect(ctx, f.proxyDSN("support", supportPW))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	modes := map[string]pgx.QueryExecMode{"simple": pgx.QueryExecModeSimpleProtocol, "prepared": pgx.QueryExecModeCacheStatement}
	for name, mode := range modes {
		read := func() string {
			t.Helper()
			var email string
			if err := conn.QueryRow(ctx, "SELECT email FROM customer WHERE customer_id = 1", mode).Scan(&email); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return email
		}
		for range 3 {
			if got := read(); got != emails[0] {
				t.Fatalf("%s: support reads %q, want %q in clear", name, got, emails[0])
			}
		}
		f.enf.Quarantine(supportID, "test")
		if got := read(); got == emails[0] {
			t.Errorf("%s: quarantined support reads %q in clear, want it masked", name, got)
		}
		f.enf.Release(supportID)
		if got := read(); got != emails[0] {
			t.Errorf("%s: released support reads %q, want %q in clear", name, got, emails[0])
		}
	}
}
