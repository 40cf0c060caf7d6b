package static_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/static"
	"ward.dev/ward/test/pgtest"
)

func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	if wardBin.path != "" {
		os.RemoveAll(filepath.Dir(wardBin.path))
	}
	os.Exit(code)
}

const chinookSQL = "../../test/testdata/chinook/chinook.sql"

var chinookOnce struct {
	sync.Once
	dsn string
}

// chinookSource loads Chinook into a database of the shared cluster once
// per test binary and adds a sequence behind customer_id, which Chinook
// itself lacks, so the copy of sequences can be checked.
func chinookSource(t *testing.T) (*pgtest.Server, string) {
	t.Helper()
	srv := pgtest.Shared(t)
	chinookOnce.Do(func() {
		dsn := srv.CreateDB(t, "chinook_src")
		data, err := os.ReadFile(chinookSQL)
		if err != nil {
			t.Fatal(err)
		}
		// The script creates and connects to its own database; the test
		// loads it into the one it created instead.
		var script strings.Builder
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "DROP DATABASE") || strings.HasPrefix(line, "CREATE DATABASE") || strings.HasPrefix(line, `\c `) {
				continue
			}
			script.WriteString(line)
			script.WriteByte('\n')
		}
		psql(t, srv, dsn, script.String())
		srv.Exec(t, "chinook_src", `CREATE SEQUENCE customer_customer_id_seq OWNED BY customer.customer_id;
			ALTER TABLE customer ALTER customer_id SET DEFAULT nextval('customer_customer_id_seq');
			SELECT setval('customer_customer_id_seq', (SELECT max(customer_id) FROM customer));`)
		chinookOnce.dsn = dsn
	})
	if chinookOnce.dsn == "" {
		t.Fatal("loading Chinook failed in an earlier test")
	}
	return srv, chinookOnce.dsn
}

func psql(t *testing.T, srv *pgtest.Server, dsn, script string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(srv.BinDir(), "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--dbname", dsn, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// copyOut returns the text of COPY (query) TO STDOUT with options.
func copyOut(t *testing.T, conn *pgx.Conn, query, options string) string {
	t.Helper()
	var buf bytes.Buffer
	if _, err := conn.PgConn().CopyTo(context.Background(), &buf, "COPY ("+query+") TO STDOUT "+options); err != nil {
		t.Fatalf("COPY (%s): %v", query, err)
	}
	return buf.String()
}

func scalar[T any](t *testing.T, conn *pgx.Conn, query string) T {
	t.Helper()
	var v T
	if err := conn.QueryRow(context.Background(), query).Scan(&v); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v
}

func chinookRules(t *testing.T) *rules.Ruleset {
	return loadRules(t, "testdata/chinook-rules.yaml")
}

func TestChinookCopy(t *testing.T) {
	srv, srcDSN := chinookSource(t)
	dstDSN := srv.CreateDB(t, "chinook_masked")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	stats, err := static.CopyDatabase(ctx, chinookRules(t), testKeys(t), static.DBOptions{
		Source: srcDSN, Target: dstDSN, BinDir: srv.BinDir(), Jobs: 2,
	})
	if err != nil {
		t.Fatalf("CopyDatabase: %v", err)
	}
	src, dst := connect(t, srcDSN), connect(t, dstDSN)

	t.Run("row counts", func(t *testing.T) {
		for table, n := range stats.Tables {
			want := scalar[int64](t, src, "SELECT count(*) FROM "+table)
			got := scalar[int64](t, dst, "SELECT count(*) FROM "+table)
			if got != want || n != want {
				t.Errorf("%s: target has %d rows, copy reported %d, source has %d", table, got, n, want)
			}
		}
		if len(stats.Tables) != 11 {
			t.Errorf("copied %d tables, want 11", len(stats.Tables))
		}
	})

	t.Run("no masked value equals original", func(t *testing.T) {
		rs := chinookRules(t)
		for _, r := range rs.Rules {
			key := map[string]string{"customer": "customer_id", "employee": "employee_id", "invoice": "invoice_id"}[r.Column.Table]
			q := fmt.Sprintf("SELECT %s, %s::text FROM %s WHERE %s IS NOT NULL ORDER BY 1", key, r.Column.Name, r.Column.TableName(), r.Column.Name)
			before := copyOut(t, src, q, "")
			after := copyOut(t, dst, q, "")
			a, b := strings.Split(before, "\n"), strings.Split(after, "\n")
			if len(a) != len(b) {
				t.Fatalf("%s: %d non-NULL values before, %d after", r.Column, len(a), len(b))
			}
			for i := range a {
				if a[i] != "" && a[i] == b[i] {
					t.Errorf("%s: row %q kept its value", r.Column, a[i])
				}
			}
		}
	})

	t.Run("dates of one employee shift alike", func(t *testing.T) {
		q := "SELECT employee_id, hire_date - birth_date FROM employee ORDER BY 1"
		if before, after := copyOut(t, src, q, ""), copyOut(t, dst, q, ""); before != after {
			t.Errorf("hire_date - birth_date differs:\nsource %q\ntarget %q", before, after)
		}
	})

	t.Run("invoices join customers", func(t *testing.T) {
		q := "SELECT c.customer_id, count(*) FROM invoice i JOIN customer c USING (customer_id) GROUP BY 1 ORDER BY 1"
		if before, after := copyOut(t, src, q, ""), copyOut(t, dst, q, ""); before != after || before == "" {
			t.Errorf("invoices per customer differ:\nsource %q\ntarget %q", before, after)
		}
	})

	t.Run("constraints hold", func(t *testing.T) {
		q := "SELECT conname, contype FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1"
		before, after := copyOut(t, src, q, ""), copyOut(t, dst, q, "")
		if before != after || !strings.Contains(after, "invoice_customer_id_fkey\tf") || !strings.Contains(after, "customer_pkey\tp") {
			t.Errorf("constraints differ:\nsource %q\ntarget %q", before, after)
		}
		// Valid constraints were created after the rows, so the rows obey them.
		if n := scalar[int64](t, dst, "SELECT count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND NOT convalidated"); n != 0 {
			t.Errorf("%d constraints not validated", n)
		}
	})

	t.Run("sequences continue", func(t *testing.T) {
		// The insert is rolled back, so the other subtests see the copy
		// as it was; the sequence keeps its new value.
		tx, err := dst.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		var next int64
		err = tx.QueryRow(context.Background(), "INSERT INTO customer (first_name, last_name, email) VALUES ('A', 'B', 'a@example.com') RETURNING customer_id").Scan(&next)
		if err != nil {
			t.Fatal(err)
		}
		if max := scalar[int64](t, src, "SELECT max(customer_id) FROM customer"); next <= max {
			t.Errorf("next customer_id = %d, want above the source maximum %d", next, max)
		}
	})

	t.Run("files agree with the copy", func(t *testing.T) {
		dir := t.TempDir()

		// A plain pg_dump of the source, masked as a file, carries the
		// same customer rows as the masked database.
		dump := filepath.Join(dir, "chinook.sql")
		cmd := exec.Command(filepath.Join(srv.BinDir(), "pg_dump"), "--no-owner", "--dbname", srcDSN, "--file", dump)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pg_dump: %v\n%s", err, out)
		}
		maskedDump := filepath.Join(dir, "masked.sql")
		if _, err := static.MaskFile(chinookRules(t), testKeys(t), dump, maskedDump, static.FileOptions{Format: static.FormatPGDump}); err != nil {
			t.Fatalf("MaskFile(dump): %v", err)
		}
		data, _ := os.ReadFile(maskedDump)
		for _, table := range []string{"customer", "employee", "invoice"} {
			block := copyBlock(t, string(data), "public."+table)
			want := copyOut(t, dst, "SELECT * FROM "+table, "")
			if sortLines(block) != sortLines(want) {
				t.Errorf("%s: masked dump and masked database differ", table)
			}
		}

		// A dump written as INSERT statements, masked and restored,
		// holds the same customers as the masked database.
		inserts := filepath.Join(dir, "inserts.sql")
		cmd = exec.Command(filepath.Join(srv.BinDir(), "pg_dump"), "--no-owner", "--inserts", "--rows-per-insert=25", "--dbname", srcDSN, "--file", inserts)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pg_dump --inserts: %v\n%s", err, out)
		}
		maskedInserts := filepath.Join(dir, "inserts-masked.sql")
		if _, err := static.MaskFile(chinookRules(t), testKeys(t), inserts, maskedInserts, static.FileOptions{Format: static.FormatPGDump}); err != nil {
			t.Fatalf("MaskFile(inserts): %v", err)
		}
		restoredDSN := srv.CreateDB(t, "chinook_restored")
		script, _ := os.ReadFile(maskedInserts)
		psql(t, srv, restoredDSN, string(script))
		restored := connect(t, restoredDSN)
		for _, table := range []string{"customer", "employee", "invoice"} {
			q := "SELECT * FROM " + table + " ORDER BY 1"
			if got, want := copyOut(t, restored, q, ""), copyOut(t, dst, q, ""); got != want {
				t.Errorf("%s: restored INSERT dump and masked database differ", table)
			}
		}

		// A CSV export of the source, masked as a file, matches a CSV
		// export of the masked database.
		csvIn := filepath.Join(dir, "customer.csv")
		os.WriteFile(csvIn, []byte(copyOut(t, src, "SELECT * FROM customer", "WITH (FORMAT csv, HEADER)")), 0o600)
		csvOut := filepath.Join(dir, "customer.masked.csv")
		if _, err := static.MaskFile(chinookRules(t), testKeys(t), csvIn, csvOut, static.FileOptions{Format: static.FormatCSV, Table: "public.customer"}); err != nil {
			t.Fatalf("MaskFile(csv): %v", err)
		}
		got, _ := os.ReadFile(csvOut)
		want := copyOut(t, dst, "SELECT * FROM customer", "WITH (FORMAT csv, HEADER)")
		if sortLines(string(got)) != sortLines(want) {
			t.Errorf("masked CSV and masked database differ:\n%s\n----\n%s", got, want)
		}
	})
}

// copyBlock returns the data lines of the COPY block for table in a dump.
func copyBlock(t *testing.T, dump, table string) string {
	t.Helper()
	i := strings.Index(dump, "COPY "+table+" (")
	if i < 0 {
		t.Fatalf("dump has no COPY block for %s", table)
	}
	start := i + strings.Index(dump[i:], "\n") + 1
	end := start + strings.Index(dump[start:], "\\.\n")
	return dump[start:end]
}

func sortLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		for j := i + 1; j < len(lines); j++ {
			if lines[j] < lines[i] {
				lines[i], lines[j] = lines[j], lines[i]
			}
		}
	}
	return strings.Join(lines, "\n")
}

func tableCount(t *testing.T, dsn string) int64 {
	return scalar[int64](t, connect(t, dsn), "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
}

func TestChinookCopyFailures(t *testing.T) {
	srv, srcDSN := chinookSource(t)
	tests := []struct {
		name, rules string
		check       func(t *testing.T, err error)
	}{
		{"target refuses a row", "columns:\n  public.customer.state: {transformer: redact, with: " + strings.Repeat("x", 50) + "}\n",
			func(t *testing.T, err error) {
				var re *static.RowError
				if !errors.As(err, &re) || re.Table != "public.customer" || re.Row != 1 || !strings.Contains(err.Error(), "too long") {
					t.Errorf("error = %v, want target rejection of public.customer row 1", err)
				}
			}},
		{"transformer fails on a row", "columns:\n  public.customer.phone: {transformer: fpe, keep_first: 12}\n",
			func(t *testing.T, err error) {
				var re *static.RowError
				if !errors.As(err, &re) || re.Table != "public.customer" || re.Row < 1 || !strings.Contains(err.Error(), "column phone") {
					t.Errorf("error = %v, want a masking failure in public.customer column phone", err)
				}
			}},
		{"rule names a missing column", "columns:\n  public.customer.emial: redact\n",
			func(t *testing.T, err error) {
				if !errors.Is(err, rules.ErrNoColumn) || !strings.Contains(err.Error(), "r.yaml:2") {
					t.Errorf("error = %v, want ErrNoColumn at r.yaml:2", err)
				}
			}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dstDSN := srv.CreateDB(t, fmt.Sprintf("chinook_fail_%d", i))
			rs, err := rules.Parse("r.yaml", []byte(tc.rules))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_, err = static.CopyDatabase(ctx, rs, testKeys(t), static.DBOptions{Source: srcDSN, Target: dstDSN, BinDir: srv.BinDir()})
			tc.check(t, err)
			if n := tableCount(t, dstDSN); n != 0 {
				t.Errorf("target has %d tables after the failed copy, want 0", n)
			}
		})
	}
}
