package pgproxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// rawExchange sends msgs followed by Sync on conn's wire and returns the
// text of every DataRow value and error message up to ReadyForQuery.
func rawExchange(t *testing.T, conn *pgconn.PgConn, msgs ...pgproto3.FrontendMessage) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fe := conn.Frontend()
	for _, m := range msgs {
		fe.Send(m)
	}
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			for _, v := range m.Values {
				out.Write(v)
				out.WriteByte('\n')
			}
		case *pgproto3.ErrorResponse:
			out.WriteString("ERROR " + m.Message + "\n")
		case *pgproto3.ReadyForQuery:
			return out.String()
		}
	}
}

// TestFailedNameReuseKeepsMasking reuses statement, portal and cursor names
// in ways upstream rejects or never executes. In each case the server runs
// a statement that reads e-mail addresses, while the proxy saw a harmless
// one under the same name: the results must stay masked.
func TestFailedNameReuseKeepsMasking(t *testing.T) {
	f := startProxy(t, "writes: passthrough\n")
	emails := direct(t, f.pg, "SELECT email FROM customer")
	ctx := context.Background()
	conn := f.connect(t, "tester", testerPW)
	pc := conn.PgConn()
	simple := func(q string) {
		t.Helper()
		if _, err := pc.Exec(ctx, q).ReadAll(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	t.Run("parse over a SQL-prepared name", func(t *testing.T) {
		simple("PREPARE foo AS SELECT lower(email) FROM customer")
		out := rawExchange(t, pc, &pgproto3.Parse{Name: "foo", Query: "SELECT 'x'::text"})
		if !strings.Contains(out, "already exists") {
			t.Fatalf("Parse over foo: %q, want an error from upstream", out)
		}
		out = rawExchange(t, pc, &pgproto3.Bind{PreparedStatement: "foo"}, &pgproto3.Execute{})
		assertNoEmail(t, "execute foo", out, emails)
	})

	t.Run("bind onto a cursor name", func(t *testing.T) {
		simple("DECLARE held CURSOR WITH HOLD FOR SELECT lower(email) FROM customer")
		out := rawExchange(t, pc, &pgproto3.Parse{Name: "harmless", Query: "SELECT 'x'::text"},
			&pgproto3.Bind{DestinationPortal: "held", PreparedStatement: "harmless"})
		if !strings.Contains(out, "already exists") {
			t.Fatalf("Bind onto held: %q, want an error from upstream", out)
		}
		out = rawExchange(t, pc, &pgproto3.Execute{Portal: "held"})
		assertNoEmail(t, "execute held", out, emails)
	})

	t.Run("declare that is only parsed", func(t *testing.T) {
		simple("BEGIN")
		simple("DECLARE c2 CURSOR FOR SELECT lower(email) FROM customer")
		rawExchange(t, pc, &pgproto3.Parse{Name: "d", Query: "DECLARE c2 CURSOR FOR SELECT 'x'::text"})
		rows, err := pc.Exec(ctx, "FETCH ALL FROM c2").ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		for _, r := range rows {
			for _, row := range r.Rows {
				for _, v := range row {
					out.Write(v)
					out.WriteByte('\n')
				}
			}
		}
		if out.Len() == 0 {
			t.Fatal("FETCH ALL FROM c2 returned no rows")
		}
		assertNoEmail(t, "fetch c2", out.String(), emails)
		simple("COMMIT")
	})
}

// TestComputedOutputsRedacted computes values from masked columns whose
// transformers keep part of their input: partial keeps the last digits of
// a phone number, and email keeps the domain. Each computed output must be
// redacted, or substr would reveal a value piece by piece.
func TestComputedOutputsRedacted(t *testing.T) {
	f := startProxy(t, "")
	phones := direct(t, f.pg, "SELECT phone FROM customer WHERE phone IS NOT NULL ORDER BY customer_id")
	for _, q := range []string{
		"SELECT substr(phone, 1, 6) FROM customer WHERE phone IS NOT NULL",
		"SELECT 'x@' || substr(email, 1, 4) FROM customer",
	} {
		out, err := f.psql(t, "tester", testerPW, q)
		if err != nil {
			t.Fatalf("psql %q: %v\n%s", q, err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line != "REDACTED" {
				t.Errorf("%s: row %q, want REDACTED", q, line)
				break
			}
		}
	}
	// The stored column itself still gets its rule: the last two digits.
	out, err := f.psql(t, "tester", testerPW, "SELECT phone FROM customer WHERE phone IS NOT NULL ORDER BY customer_id LIMIT 1")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out); got == "REDACTED" || got == phones[0] {
		t.Errorf("phone = %q, want the partial mask of a stored value", got)
	}
}

// TestReplacedViewRetraced prepares a statement over a view of a kept
// column, replaces the view through the proxy with one over e-mail
// addresses, and runs the prepared statement again. PostgreSQL replans it
// over the new view, so the proxy must trace that view afresh.
func TestReplacedViewRetraced(t *testing.T) {
	f := startProxy(t, "writes: passthrough\nddl: allow\n")
	emails := direct(t, f.pg, "SELECT email FROM customer")
	direct(t, f.pg, "CREATE VIEW swapped AS SELECT invoice_id::text AS x FROM invoice")
	direct(t, f.pg, "ALTER VIEW swapped OWNER TO "+upstreamRole)
	direct(t, f.pg, "GRANT CREATE ON SCHEMA public TO "+upstreamRole)
	t.Cleanup(func() {
		direct(t, f.pg, "DROP VIEW IF EXISTS swapped")
		direct(t, f.pg, "REVOKE CREATE ON SCHEMA public FROM "+upstreamRole)
	})

	ctx := context.Background()
	conn := f.connect(t, "tester", testerPW)
	read := func() string {
		t.Helper()
		rows, err := conn.Query(ctx, "SELECT x FROM swapped")
		if err != nil {
			t.Fatal(err)
		}
		values, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(values, "\n")
	}
	if out := read(); !strings.Contains(out, "\n2\n") {
		t.Fatalf("view of invoice ids through the proxy = %.40q…, want the ids kept", out)
	}
	if _, err := conn.Exec(ctx, "CREATE OR REPLACE VIEW swapped AS SELECT lower(email) AS x FROM customer"); err != nil {
		t.Fatal(err)
	}
	assertNoEmail(t, "replaced view", read(), emails)
}
