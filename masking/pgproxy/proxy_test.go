package pgproxy_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// assertNoEmail fails when out contains any of the original e-mails.
func assertNoEmail(t *testing.T, what, out string, emails []string) {
	t.Helper()
	lower := strings.ToLower(out)
	for _, e := range emails {
		if strings.Contains(lower, strings.ToLower(e)) {
			t.Errorf("%s: output contains original e-mail %q", what, e)
			return
		}
	}
}

func TestTesterSeesNoEmail(t *testing.T) {
	f := startProxy(t, "")
	emails := direct(t, f.pg, "SELECT email FROM customer")

	queries := []string{
		"SELECT email FROM customer",
		"SELECT lower(email) FROM customer",
		"SELECT email || '' FROM customer",
		"SELECT upper(email)::text AS e FROM customer",
		"SELECT e FROM (SELECT email AS e FROM customer) s",
		"WITH c AS (SELECT email FROM customer) SELECT * FROM c",
		"SELECT * FROM customer",
		"SELECT * FROM customer_contact",
		"SELECT email FROM customer_contact",
		"SELECT c FROM customer c",
		"SELECT row_to_json(c) FROM customer c",
		"SELECT json_build_object('e', email) FROM customer",
		"SELECT CASE WHEN customer_id > 0 THEN email END FROM customer",
		"SELECT email FROM customer UNION SELECT 'x'",
		"SELECT (SELECT max(email) FROM customer)",
		"SELECT string_agg(email, ',') FROM customer",
		"SELECT email FROM customer JOIN invoice USING (customer_id)",
		"SELECT email_of(customer_id) FROM customer",
		"SELECT customer_id ### 0 FROM customer",
		"SELECT x FROM unnest(ARRAY(SELECT email FROM customer)) AS x",
		"COPY customer TO STDOUT",
		"COPY (SELECT lower(email) FROM customer) TO STDOUT",
		"COPY customer TO STDOUT WITH (FORMAT csv, HEADER)",
		"COPY customer (email, phone) TO STDOUT WITH (FORMAT csv, DELIMITER ';')",
		"COPY customer TO STDOUT WITH (DELIMITER '|')",
		"SELECT 1; SELECT email FROM customer; SELECT 2",
		"SELECT email FROM contact_log",
		"SELECT email FROM contact_log_low",
		"SELECT lower(email) FROM contact_log_low",
		"SELECT email FROM contact_note",
		"SELECT email FROM contact_note_old",
		"SELECT email_lower FROM signup",
		"SELECT * FROM signup",
	}
	for _, q := range queries {
		out, err := f.psql(t, "tester", testerPW, q)
		if err != nil {
			t.Errorf("psql %q: %v\n%s", q, err, out)
			continue
		}
		if out == "" {
			// A redacted value of a non-text type is NULL, which psql
			// prints as an empty line, so only no output at all fails.
			t.Errorf("psql %q returned nothing", q)
		}
		assertNoEmail(t, q, out, emails)
	}
}

func TestTesterSeesPlainColumns(t *testing.T) {
	f := startProxy(t, "")
	queries := []string{
		"SELECT sum(total)::text FROM invoice",
		"SELECT invoice_id || ' ' || total FROM invoice ORDER BY invoice_id",
		"SELECT country FROM customer ORDER BY customer_id",
		"SELECT count(*)::text FROM customer",
	}
	for _, q := range queries {
		want := strings.Join(direct(t, f.pg, q), "\n") + "\n"
		got, err := f.psql(t, "tester", testerPW, q)
		if err != nil {
			t.Fatalf("psql %q: %v\n%s", q, err, got)
		}
		if got != want {
			t.Errorf("psql %q = %.200q, want %.200q", q, got, want)
		}
	}
}

func TestSupportSeesEmailOnly(t *testing.T) {
	f := startProxy(t, "")
	emails := direct(t, f.pg, "SELECT email FROM customer ORDER BY customer_id")
	phones := direct(t, f.pg, "SELECT phone FROM customer WHERE phone IS NOT NULL ORDER BY customer_id")

	out, err := f.psql(t, "support", supportPW, "SELECT email FROM customer ORDER BY customer_id")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); !slices.Equal(got, emails) {
		t.Errorf("support e-mails = %.100q, want the originals %.100q", got, emails)
	}

	out, err = f.psql(t, "support", supportPW, "SELECT phone FROM customer WHERE phone IS NOT NULL ORDER BY customer_id")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimSpace(out), "\n")
	if len(got) != len(phones) {
		t.Fatalf("support phones: %d rows, want %d", len(got), len(phones))
	}
	for i := range got {
		if got[i] == phones[i] {
			t.Errorf("support phone %d = %q, the original; want it masked", i, got[i])
		}
	}

	// Through a view the same decisions hold.
	out, err = f.psql(t, "support", supportPW, "SELECT email, phone FROM customer_contact ORDER BY customer_id LIMIT 1")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if want := emails[0] + "|"; !strings.HasPrefix(out, want) || strings.Contains(out, phones[0]) {
		t.Errorf("support through view = %q, want e-mail %q in clear and phone masked", out, emails[0])
	}

	// Mixing a visible and a masked column masks the result.
	out, err = f.psql(t, "support", supportPW, "SELECT email || phone FROM customer WHERE phone IS NOT NULL")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	assertNoEmail(t, "email || phone", out, emails)
}

func TestPgxExtendedProtocol(t *testing.T) {
	f := startProxy(t, "")
	emails := direct(t, f.pg, "SELECT email FROM customer")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	modes := []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol,
	}
	for _, mode := range modes {
		rows, err := conn.Query(ctx, "SELECT customer_id, email, lower(email), support_rep_id FROM customer WHERE customer_id <= $1 ORDER BY customer_id", mode, 10)
		if err != nil {
			t.Fatalf("mode %v: %v", mode, err)
		}
		n := 0
		for rows.Next() {
			var id int32
			var email, lowered string
			var rep *int32
			if err := rows.Scan(&id, &email, &lowered, &rep); err != nil {
				t.Fatalf("mode %v: scan: %v", mode, err)
			}
			n++
			if id != int32(n) {
				t.Errorf("mode %v: customer_id = %d, want %d", mode, id, n)
			}
			assertNoEmail(t, mode.String(), email+" "+lowered, emails)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("mode %v: %v", mode, err)
		}
		if n != 10 {
			t.Errorf("mode %v: %d rows, want 10", mode, n)
		}
	}

	// A masked non-text column in binary format: the invoice date under a
	// rule-free sum stays, a numeric total is kept exactly.
	var total string
	if err := conn.QueryRow(ctx, "SELECT sum(total)::text FROM invoice").Scan(&total); err != nil {
		t.Fatal(err)
	}
	if want := direct(t, f.pg, "SELECT sum(total)::text FROM invoice")[0]; total != want {
		t.Errorf("sum(total) = %s, want %s", total, want)
	}
}

func TestPgxPipeline(t *testing.T) {
	f := startProxy(t, "")
	emails := direct(t, f.pg, "SELECT email FROM customer")
	ctx := context.Background()
	conn, err := pgconn.Connect(ctx, f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	p := conn.StartPipeline(ctx)
	p.SendPrepare("by_id", "SELECT email, phone FROM customer WHERE customer_id = $1", nil)
	for i := 1; i <= 5; i++ {
		p.SendQueryPrepared("by_id", [][]byte{[]byte(strconvItoa(i))}, nil, []int16{1})
		p.SendQueryParams("SELECT email FROM customer WHERE customer_id = $1", [][]byte{[]byte(strconvItoa(i))}, nil, nil, nil)
	}
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		res, err := p.GetResults()
		if err != nil {
			t.Fatal(err)
		}
		if res == nil {
			break
		}
		switch r := res.(type) {
		case *pgconn.ResultReader:
			out := r.Read()
			if out.Err != nil {
				t.Fatal(out.Err)
			}
			for _, row := range out.Rows {
				got = append(got, string(row[0]))
			}
		case *pgconn.PipelineSync:
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 {
		t.Errorf("pipeline returned %d rows, want 10", len(got))
	}
	assertNoEmail(t, "pipeline", strings.Join(got, " "), emails)
}

func strconvItoa(i int) string { return string(rune('0' + i)) }

func TestUniqueViolationScrubbed(t *testing.T) {
	f := startProxy(t, "writes: passthrough\n")
	f.pg.Exec(t, "chinook", "CREATE UNIQUE INDEX IF NOT EXISTS customer_email_key ON customer (email)")
	emails := direct(t, f.pg, "SELECT email FROM customer")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	_, err = conn.Exec(ctx, `INSERT INTO customer (customer_id, first_name, last_name, email)
		SELECT 100000, 'a', 'b', email FROM customer WHERE customer_id = 1`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("insert duplicate e-mail: err = %v, want a PgError", err)
	}
	if pgErr.Code != "23505" {
		t.Errorf("SQLSTATE = %s, want 23505", pgErr.Code)
	}
	all := strings.Join([]string{pgErr.Message, pgErr.Detail, pgErr.Hint, pgErr.Where, pgErr.InternalQuery,
		pgErr.SchemaName, pgErr.TableName, pgErr.ColumnName, pgErr.ConstraintName, pgErr.Routine}, "|")
	assertNoEmail(t, "unique violation", all, emails)
	if !strings.Contains(pgErr.Detail, "Key (email)=") {
		t.Errorf("Detail = %q, want the key column named", pgErr.Detail)
	}

	out, _ := f.psql(t, "tester", testerPW, `\set VERBOSITY verbose
INSERT INTO customer (customer_id, first_name, last_name, email) SELECT 100000, 'a', 'b', email FROM customer WHERE customer_id = 2`)
	assertNoEmail(t, "psql unique violation", out, emails)

	// A cast error quotes the value in its message.
	_, err = conn.Exec(ctx, "SELECT email::int FROM customer")
	if !errors.As(err, &pgErr) {
		t.Fatalf("cast e-mail to int: err = %v, want a PgError", err)
	}
	assertNoEmail(t, "cast error", pgErr.Message+pgErr.Detail, emails)
}

func TestReadOnlyRejectsWrites(t *testing.T) {
	f := startProxy(t, "")
	writes := []string{
		"INSERT INTO genre (genre_id, name) VALUES (1000, 'x')",
		"UPDATE genre SET name = 'x'",
		"DELETE FROM genre",
		"WITH d AS (DELETE FROM genre RETURNING *) SELECT * FROM d",
		"CREATE TABLE t (a int)",
		"SET default_transaction_read_only = off",
		"SELECT * INTO genre_copy FROM genre",
	}
	for _, q := range writes {
		out, err := f.psql(t, "tester", testerPW, q)
		if err == nil {
			t.Errorf("psql %q succeeded, want it rejected", q)
		}
		if !strings.Contains(out, "read-only") && !strings.Contains(out, "does not allow") {
			t.Errorf("psql %q output = %q, want a read-only error", q, out)
		}
	}
	if n := direct(t, f.pg, "SELECT count(*)::text FROM genre WHERE genre_id = 1000"); n[0] != "0" {
		t.Errorf("genre 1000 exists after rejected insert")
	}
}

func TestBinaryTimestampMasked(t *testing.T) {
	f := startProxy(t, "")
	ctx := context.Background()
	direct, err := pgx.Connect(ctx, f.pg.DSN("chinook"))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	proxied, err := pgx.Connect(ctx, f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatal(err)
	}
	defer proxied.Close(ctx)

	const q = "SELECT birth_date, hire_date FROM employee WHERE employee_id = $1"
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		var birth, hire, maskedBirth, keptHire time.Time
		if err := direct.QueryRow(ctx, q, 1).Scan(&birth, &hire); err != nil {
			t.Fatal(err)
		}
		if err := proxied.QueryRow(ctx, q, mode, 1).Scan(&maskedBirth, &keptHire); err != nil {
			t.Fatalf("mode %v: %v", mode, err)
		}
		if maskedBirth.Equal(birth) {
			t.Errorf("mode %v: birth_date = %v, the original; want it shifted", mode, maskedBirth)
		}
		if d := maskedBirth.Sub(birth); d > 300*24*time.Hour || d < -300*24*time.Hour {
			t.Errorf("mode %v: birth_date moved by %v, want at most 300 days", mode, d)
		}
		if !keptHire.Equal(hire) {
			t.Errorf("mode %v: hire_date = %v, want the original %v", mode, keptHire, hire)
		}
	}
}

func TestEntityKeyedDateShift(t *testing.T) {
	f := startProxy(t, "")
	ctx := context.Background()
	const q = "SELECT customer_id, invoice_date FROM invoice WHERE customer_id IN (1, 2) ORDER BY invoice_id"
	read := func(dsn string) map[int32][]time.Time {
		t.Helper()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		out := map[int32][]time.Time{}
		for rows.Next() {
			var id int32
			var d time.Time
			if err := rows.Scan(&id, &d); err != nil {
				t.Fatal(err)
			}
			out[id] = append(out[id], d)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	orig := read(f.pg.DSN("chinook"))
	masked := read(f.proxyDSN("tester", testerPW))

	shifts := map[int32]time.Duration{}
	for id, dates := range orig {
		if len(masked[id]) != len(dates) {
			t.Fatalf("customer %d: %d masked dates, want %d", id, len(masked[id]), len(dates))
		}
		for i := range dates {
			shift := masked[id][i].Sub(dates[i])
			if shift == 0 {
				t.Errorf("customer %d invoice %d: date unchanged", id, i)
			}
			if first, ok := shifts[id]; ok && shift != first {
				t.Errorf("customer %d: shifts %v and %v differ, want one shift per customer", id, first, shift)
			}
			shifts[id] = shift
		}
	}
	// The masking key is fixed, so this holds for every run: keyed by
	// their own customer_id, customers 1 and 2 move by different amounts.
	if shifts[1] == shifts[2] {
		t.Errorf("customers 1 and 2 share shift %v, want the shift keyed by customer_id", shifts[1])
	}
}

func TestCopyFormats(t *testing.T) {
	f := startProxy(t, "")
	emails := direct(t, f.pg, "SELECT email FROM customer")

	// psql's \copy runs COPY ... TO STDOUT and writes the rows itself.
	out, err := f.psql(t, "tester", testerPW, `\copy (SELECT customer_id, email, country FROM customer ORDER BY 1) TO STDOUT WITH (FORMAT csv, HEADER)`)
	if err != nil {
		t.Fatalf("psql \\copy: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] != "customer_id,email,country" {
		t.Errorf("CSV header = %q, want the column names", lines[0])
	}
	if len(lines) != len(emails)+1 {
		t.Errorf("CSV has %d lines, want %d", len(lines), len(emails)+1)
	}
	if !strings.HasPrefix(lines[1], "1,") || !strings.HasSuffix(lines[1], ",Brazil") {
		t.Errorf("CSV row 1 = %q, want id and country kept", lines[1])
	}
	assertNoEmail(t, "CSV", out, emails)

	out, err = f.psql(t, "tester", testerPW, "COPY customer TO STDOUT WITH (FORMAT csv, FORCE_QUOTE *)")
	if err == nil || !strings.Contains(out, "COPY TO STDOUT of masked columns") {
		t.Errorf("COPY with FORCE_QUOTE = %v %q, want a rejection", err, out)
	}
	assertNoEmail(t, "FORCE_QUOTE", out, emails)
	out, err = f.psql(t, "tester", testerPW, "COPY customer TO STDOUT WITH (FORMAT binary)")
	if err == nil {
		t.Errorf("binary COPY of masked columns succeeded")
	}
	assertNoEmail(t, "binary COPY", out, emails)
}
