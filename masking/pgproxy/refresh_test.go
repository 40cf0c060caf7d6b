package pgproxy_test

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestPreparedStatementSeesReplacedView prepares a statement that computes
// its output from a view column in one session, and replaces the view
// through another session so that the column now reads customer.email.
// PostgreSQL plans the prepared statement again, so its next execution
// returns e-mails. The output is computed, so PostgreSQL names no source
// for it and only the proxy's own trace of the statement can tell, which
// must therefore be traced again.
func TestPreparedStatementSeesReplacedView(t *testing.T) {
	f := startProxy(t, "writes: passthrough\nddl: allow\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The upstream role may create objects only in a schema of its own.
	pg, _ := chinookServer(t)
	pg.Exec(t, "chinook", "CREATE SCHEMA replaced AUTHORIZATION "+upstreamRole)
	t.Cleanup(func() { pg.Exec(t, "chinook", "DROP SCHEMA replaced CASCADE") })
	admin := f.connect(t, "tester", testerPW)
	reader := f.connect(t, "tester", testerPW)
	if _, err := admin.Exec(ctx, "CREATE VIEW replaced.v AS SELECT customer_id, city::text AS note FROM customer"); err != nil {
		t.Fatal(err)
	}

	originals := map[string]bool{}
	rows, err := f.connect(t, "support", supportPW).Query(ctx, "SELECT email FROM customer")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			t.Fatal(err)
		}
		originals[strings.ToUpper(e)] = true
	}
	if len(originals) == 0 {
		t.Fatal("support read no e-mails")
	}

	if _, err := reader.Prepare(ctx, "notes", "SELECT upper(note) FROM replaced.v ORDER BY customer_id"); err != nil {
		t.Fatal(err)
	}
	read := func() []string {
		t.Helper()
		rows, err := reader.Query(ctx, "notes")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for rows.Next() {
			var v *string
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			if v != nil {
				out = append(out, *v)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := read(); len(got) == 0 {
		t.Fatal("the prepared statement returned no cities")
	}

	if _, err := admin.Exec(ctx, "CREATE OR REPLACE VIEW replaced.v AS SELECT customer_id, email::text AS note FROM customer"); err != nil {
		t.Fatal(err)
	}
	for _, v := range read() {
		if originals[v] {
			t.Fatalf("the prepared statement returned the original e-mail %q, upper-cased, after the view was replaced", v)
		}
	}
}

// TestPassthroughRejectsSchemaChanges checks that passthrough mode rejects
// schema changes unless ddl: allow is set: a temporary view named like a
// table would hide it from the proxy's name resolution.
func TestPassthroughRejectsSchemaChanges(t *testing.T) {
	f := startProxy(t, "writes: passthrough\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := f.connect(t, "tester", testerPW)
	for _, q := range []string{
		"CREATE TEMP VIEW customer AS SELECT customer_id, email AS city FROM public.customer",
		"DO $$BEGIN PERFORM 1; END$$",
		"CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
	} {
		_, err := conn.Exec(ctx, q)
		if err == nil || !strings.Contains(err.Error(), "ddl: allow") {
			t.Errorf("%s in passthrough mode: %v, want a rejection naming ddl: allow", q, err)
		}
	}
	if _, err := conn.Exec(ctx, "UPDATE customer SET support_rep_id = support_rep_id WHERE customer_id = 1"); err != nil {
		t.Errorf("a data change in passthrough mode: %v, want it allowed", err)
	}
}
