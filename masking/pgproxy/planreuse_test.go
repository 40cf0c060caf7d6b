package pgproxy_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestPlanReuseFollowsPolicy runs one statement repeatedly, so later runs
// reuse the session's result plan, and checks that a quarantine and its
// release change the result at once.
func TestPlanReuseFollowsPolicy(t *testing.T) {
	f := startProxy(t, "")
	ctx := context.Background()
	emails := direct(t, f.pg, "SELECT email FROM customer ORDER BY customer_id")
	conn := f.connect(t, "support", supportPW)

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

// TestBoundPortalFollowsPolicy binds a portal while support may read
// e-mail addresses in clear, quarantines support before the Execute, and
// checks that the rows come back masked.
func TestBoundPortalFollowsPolicy(t *testing.T) {
	f := startProxy(t, "")
	ctx := context.Background()
	emails := direct(t, f.pg, "SELECT email FROM customer ORDER BY customer_id")
	conn := f.connect(t, "support", supportPW)
	pc := conn.PgConn()

	const q = "SELECT email FROM customer WHERE customer_id = 1"
	out := rawExchange(t, pc, &pgproto3.Parse{Name: "s", Query: q}, &pgproto3.Describe{ObjectType: 'S', Name: "s"})
	if strings.Contains(out, "ERROR") {
		t.Fatal(out)
	}
	// Bind without Sync keeps the portal open for the Execute that follows.
	pc.Frontend().Send(&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s"})
	pc.Frontend().Send(&pgproto3.Flush{})
	if err := pc.Frontend().Flush(); err != nil {
		t.Fatal(err)
	}
	if msg, err := pc.ReceiveMessage(ctx); err != nil {
		t.Fatal(err)
	} else if _, ok := msg.(*pgproto3.BindComplete); !ok {
		t.Fatalf("after Bind: %T, want BindComplete", msg)
	}
	f.enf.Quarantine(supportID, "test")
	defer f.enf.Release(supportID)
	out = rawExchange(t, pc, &pgproto3.Execute{Portal: "p"})
	if strings.Contains(out, emails[0]) {
		t.Errorf("Execute after quarantine returned %q, want it masked", out)
	}
}
