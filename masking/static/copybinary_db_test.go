package static_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/static"
	"ward.dev/ward/test/pgtest"
)

// TestCopyBinaryAndTextTables copies a table that qualifies for COPY's
// binary format, with values of many built-in types kept and text columns
// masked, and a table that does not because it has a column of a type
// created in the database. Kept values must arrive unchanged and masked
// ones as the engine masks their text.
func TestCopyBinaryAndTextTables(t *testing.T) {
	srv := pgtest.Shared(t)
	src := srv.CreateDB(t, "binary_src")
	srv.Exec(t, "binary_src", `
		CREATE TYPE mood AS ENUM ('calm', 'busy');
		CREATE TABLE wide (
			id bigint PRIMARY KEY, email varchar(80), code char(6), raw bytea, amount numeric,
			ratio float8, at timestamptz, during interval, ids int[], doc jsonb, cost money);
		INSERT INTO wide VALUES
			(1, E'a\tb\\\\c\nd@example.org', 'AB12  ', decode(repeat('00ff7f80', 64), 'hex'), 12345.678901234567890,
			 'NaN', '2024-02-29 23:59:59.123456+05:30', '1 year 2 mons 3 days 04:05:06.7', '{1,NULL,3}', '{"k": [1, "v"]}', 12.34),
			(2, NULL, NULL, NULL, NULL, '-Infinity', NULL, NULL, '{}', 'null', NULL),
			(3, 'plain@example.org', 'Z', '\x', -0.000001, -0, 'infinity', '-1 day', '{{1,2},{3,4}}', '[]', -0.01);
		CREATE TABLE moods (id int PRIMARY KEY, email text, history mood[]);
		INSERT INTO moods VALUES (1, 'm@example.org', '{calm,busy}'), (2, NULL, NULL);`)

	rs, err := rules.Parse("b.yaml", []byte(`columns:
  public.wide.email: {transformer: partial, keep_last: 4}
  public.wide.code: {transformer: partial, keep_first: 1}
  public.moods.email: email
`))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dst := srv.CreateDB(t, "binary_dst")
	if _, err := static.CopyDatabase(ctx, rs, testKeys(t), static.DBOptions{Source: src, Target: dst, BinDir: srv.BinDir()}); err != nil {
		t.Fatalf("CopyDatabase: %v", err)
	}

	srcConn, dstConn := connect(t, src), connect(t, dst)
	catalog, err := static.ReadCatalog(ctx, srcConn)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := rules.Compile(rs, catalog, testKeys(t))
	if err != nil {
		t.Fatal(err)
	}
	maskers := map[string]*rules.Table{}
	for table, binary := range map[string]bool{"wide": true, "moods": false} {
		var columns []string
		for _, ci := range catalog.Tables["public."+table] {
			columns = append(columns, ci.Column.Name)
		}
		if maskers[table], err = plan.Table("public", table, columns); err != nil {
			t.Fatal(err)
		}
		got, err := static.BinaryCopyable(ctx, srcConn, "public."+table, maskers[table])
		if err != nil || got != binary {
			t.Errorf("BinaryCopyable(%s) = %v, %v, want %v", table, got, err, binary)
		}
	}

	for _, q := range []string{
		"SELECT id, raw, amount, ratio, at, during, ids, doc, cost FROM wide ORDER BY id",
		"SELECT id, history FROM moods ORDER BY id",
	} {
		if got, want := copyOut(t, dstConn, q, ""), copyOut(t, srcConn, q, ""); got != want {
			t.Errorf("target %q =\n%s\nwant the source's\n%s", q, got, want)
		}
	}

	// The masked columns must hold what the engine makes of the source text.
	for _, c := range []struct{ table, column string }{{"wide", "email"}, {"wide", "code"}, {"moods", "email"}} {
		masker := maskers[c.table]
		index := slices.Index(masker.Columns(), c.column)
		q := "SELECT " + c.column + " FROM " + c.table + " ORDER BY id"
		want := columnValues(t, srcConn, q)
		for i, v := range want {
			if v == nil {
				continue
			}
			f, err := masker.MaskField(index, rules.Field{Text: *v}, "")
			if err != nil {
				t.Fatal(err)
			}
			want[i] = &f.Text
		}
		got := columnValues(t, dstConn, q)
		if len(got) != len(want) {
			t.Fatalf("target %s.%s has %d rows, want %d", c.table, c.column, len(got), len(want))
		}
		for i := range got {
			if (got[i] == nil) != (want[i] == nil) || got[i] != nil && *got[i] != *want[i] {
				t.Errorf("target %s.%s row %d = %v, want %v", c.table, c.column, i+1, deref(got[i]), deref(want[i]))
			}
		}
	}
}

// columnValues returns the single column of query's rows, nil for NULL.
func columnValues(t *testing.T, conn *pgx.Conn, query string) []*string {
	t.Helper()
	rows, err := conn.Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	values, err := pgx.CollectRows(rows, pgx.RowTo[*string])
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return values
}

func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

// TestCopyTablesWithoutColumns copies a table with no columns and one with
// only a generated column: both have rows, which must arrive.
func TestCopyTablesWithoutColumns(t *testing.T) {
	_, dst := copyMasked(t, "nocols", `
		CREATE TABLE marks ();
		INSERT INTO marks DEFAULT VALUES; INSERT INTO marks DEFAULT VALUES;
		CREATE TABLE ones (one int GENERATED ALWAYS AS (1) STORED);
		INSERT INTO ones DEFAULT VALUES; INSERT INTO ones DEFAULT VALUES; INSERT INTO ones DEFAULT VALUES;`,
		"columns: {}\n")
	conn := connect(t, dst)
	if got := scalar[int64](t, conn, "SELECT count(*) FROM marks"); got != 2 {
		t.Errorf("target marks has %d rows, want 2", got)
	}
	if got := scalar[int64](t, conn, "SELECT sum(one) FROM ones"); got != 3 {
		t.Errorf("target ones sums to %d, want 3 rows of 1", got)
	}
}

// copyMasked creates the database <name>_src with setup, copies it with
// CopyDatabase under the rules in rulesYAML into <name>_dst, and returns
// the DSNs of both.
func copyMasked(t *testing.T, name, setup, rulesYAML string) (src, dst string) {
	t.Helper()
	srv := pgtest.Shared(t)
	src = srv.CreateDB(t, name+"_src")
	srv.Exec(t, name+"_src", setup)
	rs, err := rules.Parse(name+".yaml", []byte(rulesYAML))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dst = srv.CreateDB(t, name+"_dst")
	if _, err := static.CopyDatabase(ctx, rs, testKeys(t), static.DBOptions{Source: src, Target: dst, BinDir: srv.BinDir()}); err != nil {
		t.Fatalf("CopyDatabase: %v", err)
	}
	return src, dst
}

// sameResult checks that query gives the same COPY text in src and dst.
func sameResult(t *testing.T, src, dst, query string) {
	t.Helper()
	if got, want := copyOut(t, connect(t, dst), query, ""), copyOut(t, connect(t, src), query, ""); got != want {
		t.Errorf("target %q = %q, want the source's %q", query, got, want)
	}
}
