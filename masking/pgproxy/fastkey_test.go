package pgproxy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// fastKeyCorpus contains texts the fast key accepts and texts it must
// leave to pg_query. The fuzz target starts from the same texts.
var fastKeyCorpus = []string{
	"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
	"SELECT abalance FROM pgbench_accounts WHERE aid = 12345 ;  \n",
	"select email, 'x' from customer where customer_id in (1, 2.5, 3)",
	`SELECT "email", c."first_name" FROM "customer" c WHERE c.customer_id >= $1 AND total <> 0.25`,
	`SELECT "a""b" FROM customer`,
	"WITH t AS (SELECT email FROM customer) SELECT lower(email) || '@' FROM t ORDER BY 1",
	"VALUES (1, 'a'), (2, 'b')",
	"TABLE customer",
	"SELECT email::text, phone FROM customer WHERE email != 'it''s' LIMIT 10 OFFSET 2",
	"SELECT data->>'email', data #> '{a}' FROM t WHERE data @> '{}'",
	"SELECT * FROM customer WHERE first_name = 'a' OR phone < '5' AND customer_id % 2 = 1",
	"SELECT a[1] FROM t",
	"SELECT count(*) FROM invoice GROUP BY customer_id HAVING sum(total) > 10",
	"SELECT set_config('search_path', 'x', false)",
	"SELECT most_common_vals FROM pg_catalog.pg_stats",
	"SELECT email INTO copy_of FROM customer",
	"WITH d AS (DELETE FROM invoice RETURNING *) SELECT 1",
	"SELECT email FROM customer FOR UPDATE",
	"SELECT interval '1 day', date '2020-01-01'",
	"SELECT $1::int, $2",
	"SELECT 1\f+\t2\r",
	// Texts the fast key leaves to pg_query.
	"SELECT 1; SELECT 2",
	"SELECT 1;;",
	"SELECT 1 -- comment",
	"SELECT /* c */ 1",
	"SELECT $$x$$",
	"SELECT $tag$x$tag$",
	"SELECT E'a\\nb'",
	"SELECT e'a'",
	"SELECT U&'d\\0061t'",
	`SELECT U&"d\0061t"`,
	"SELECT B'101', X'1f', N'x'",
	"SELECT 'a\\b'",
	"SELECT 'a'\n'b'",
	"SELECT 'a' 'b'",
	"SELECT 1e5, 1abc, 0x1f, 0o17, 0b1, 1_000, 1., .5, 1.5.6",
	"SELECT 'café'",
	"SELECT café FROM t",
	`SELECT "" FROM t`,
	`SELECT "a"b FROM t`,
	"SELECT a[1:2] FROM t",
	"SELECT x := 1",
	"SELECT f(a => 1)",
	"SELECT 1 =-1",
	"SELECT 1*-1",
	"SELECT a ~~ b, a ! b, a ? b",
	"SELECT $1a",
	"SELECT $",
	"SELECT 'unterminated",
	`SELECT "unterminated`,
	"select\vemail from customer",
	"(SELECT 1)",
	"SET search_path = 'other'",
	"EXPLAIN (ANALYZE 'true') DELETE FROM invoice",
	"DELETE FROM invoice WHERE invoice_id = 1",
	"DECLARE c CURSOR FOR SELECT email FROM customer",
	"FETCH 1 FROM c",
	"",
	";",
	"SELECT 'a\x00'",
	"SELECT 1 \x01",
}

// checkFastKey fails t unless the fast key of sql, when there is one,
// carries the same text as literalFreeKey's key from pg_query's tokens.
// It returns the fast key.
func checkFastKey(t *testing.T, sql string) (string, bool) {
	t.Helper()
	key, ok := appendFastKey(nil, sql)
	if !ok {
		return "", false
	}
	if !strings.HasPrefix(string(key), fastKeyPrefix) {
		t.Fatalf("appendFastKey(%q) = %q, want the prefix %q", sql, key, fastKeyPrefix)
	}
	const slowPrefix = "\x00literal-free\x00"
	slow := literalFreeKey(sql)
	if !strings.HasPrefix(slow, slowPrefix) {
		t.Fatalf("appendFastKey(%q) = %q, but literalFreeKey keeps the text verbatim", sql, key)
	}
	if got, want := string(key[len(fastKeyPrefix):]), slow[len(slowPrefix):]; got != want {
		t.Fatalf("appendFastKey(%q) = %q, want %q as from pg_query.Scan", sql, got, want)
	}
	return string(key), true
}

// literalVariant returns sql with every constant replaced by another of
// the same kind, from pg_query's tokens, or for n = 3 by the string '7'.
func literalVariant(sql string, n int) (string, error) {
	scan, err := pg_query.Scan(sql)
	if err != nil {
		return "", err
	}
	ints := []string{"7", "0", "123456789012"}
	decimals := []string{"7.5", "0.0", "1.25"}
	texts := []string{"'z'", "''", "'it''s'"}
	var b strings.Builder
	last := 0
	for _, tok := range scan.Tokens {
		var repl string
		switch tok.Token {
		case pg_query.Token_ICONST:
			repl = ints[n%len(ints)]
		case pg_query.Token_FCONST:
			repl = decimals[n%len(decimals)]
		case pg_query.Token_SCONST:
			repl = texts[n%len(texts)]
		default:
			continue
		}
		if n == 3 {
			repl = "'7'"
		}
		// Spaces keep a replacement from joining a neighbouring token, as
		// '7' would with a following '' string.
		b.WriteString(sql[last:tok.Start])
		b.WriteString(" " + repl + " ")
		last = int(tok.End)
	}
	b.WriteString(sql[last:])
	return b.String(), nil
}

// analysisText renders everything the proxy decides from a statement.
func analysisText(stmts []*statement, err error) string {
	if err != nil {
		return "parse error"
	}
	var b strings.Builder
	for _, st := range stmts {
		var filters []string
		for _, c := range st.filters.list() {
			filters = append(filters, c.String())
		}
		fmt.Fprintf(&b, "lineage=%s err=%v filters=%v unknown=%v stats=%v write=%v %q declares=%q fetches=%q protected=%q copy=%+v\n",
			lineageText(st), st.lineageErr, filters, st.filters.unknown, st.statsViews, st.write, st.writeWhat,
			st.declares, st.fetches, st.protected, st.copyFormat)
	}
	return b.String()
}

// checkSameAnalysis fails t unless texts that differ from sql only in
// constants have sql's fast key and its analysis.
func checkSameAnalysis(t *testing.T, sql, key string) {
	t.Helper()
	cat := testCatalog()
	want := analysisText(parseStatements(context.Background(), cat, sql))
	for n := range 4 {
		other, err := literalVariant(sql, n)
		if err != nil {
			t.Fatalf("literalVariant(%q): %v", sql, err)
		}
		otherKey, ok := checkFastKey(t, other)
		if n == 3 {
			// Strings in place of numbers may join a neighbouring string
			// (PostgreSQL joins constants separated by a newline), so this
			// variant is compared only when its key is still the same.
			if ok && otherKey != key || !ok && literalFreeKey(other) != literalFreeKey(sql) {
				continue
			}
		} else if !ok || otherKey != key {
			t.Fatalf("fast key of %q = %q, %v, want %q as for %q", other, otherKey, ok, key, sql)
		}
		got := analysisText(parseStatements(context.Background(), cat, other))
		if n == 3 && (got == "parse error" || want == "parse error") {
			// A string where the grammar takes only a number, as in
			// interval(2), is a parse error, and the statement is not cached.
			continue
		}
		if got != want {
			t.Fatalf("analysis of %q = %s, want %s as for %q, which has the same key", other, got, want, sql)
		}
	}
}

func TestFastKeyMatchesPgQuery(t *testing.T) {
	accepted := 0
	for _, sql := range fastKeyCorpus {
		key, ok := checkFastKey(t, sql)
		if !ok {
			continue
		}
		accepted++
		checkSameAnalysis(t, sql, key)
	}
	if accepted < 15 {
		t.Errorf("appendFastKey accepted %d corpus texts, want at least 15", accepted)
	}
}

func TestFastKeyRejects(t *testing.T) {
	cases := []struct{ name, sql string }{
		{"two statements", "SELECT 1; SELECT 2"},
		{"line comment", "SELECT 1 -- x"},
		{"block comment", "SELECT /* x */ 1"},
		{"dollar quote", "SELECT $$x$$"},
		{"escape string", "SELECT E'x'"},
		{"unicode string", "SELECT U&'x'"},
		{"bit string", "SELECT B'1'"},
		{"backslash", `SELECT 'a\'`},
		{"adjacent strings", "SELECT 'a'\n'b'"},
		{"exponent", "SELECT 1e5"},
		{"trailing junk", "SELECT 1abc"},
		{"hexadecimal", "SELECT 0x1f"},
		{"non-ASCII", "SELECT 'é'"},
		{"slice", "SELECT a[1:2] FROM t"},
		{"split operator", "SELECT 1=-1"},
		{"empty quoted name", `SELECT "" FROM t`},
		{"update", "UPDATE t SET a = 1"},
		{"set", "SET search_path = x"},
		{"parenthesized", "(SELECT 1)"},
		{"empty", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if key, ok := appendFastKey(nil, c.sql); ok {
				t.Errorf("appendFastKey(%q) = %q, want no key", c.sql, key)
			}
		})
	}
}

func TestFastKeySharesAnalysis(t *testing.T) {
	a, okA := appendFastKey(nil, "SELECT abalance FROM pgbench_accounts WHERE aid = 1;")
	b, okB := appendFastKey(nil, "SELECT abalance FROM pgbench_accounts WHERE aid = 999")
	if !okA || !okB || string(a) != string(b) {
		t.Errorf("fast keys = %q, %q, want one key", a, b)
	}
	c, _ := appendFastKey(nil, "SELECT email FROM customer")
	d, _ := appendFastKey(nil, "SELECT phone FROM customer")
	if string(c) == string(d) {
		t.Errorf("appendFastKey gives %q for two columns, want different keys", c)
	}
}

// FuzzFastKey checks that whenever the fast scanner gives a key, it is
// the key pg_query's tokens give, and that texts differing only in
// constants share both the key and the analysis.
func FuzzFastKey(f *testing.F) {
	for _, sql := range fastKeyCorpus {
		f.Add(sql)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if len(sql) > 4096 {
			return
		}
		key, ok := checkFastKey(t, sql)
		if !ok {
			return
		}
		checkSameAnalysis(t, sql, key)
	})
}

// BenchmarkStatementKey compares building the statement-cache key of
// pgbench's select-only statement with pg_query and with the fast scanner.
func BenchmarkStatementKey(b *testing.B) {
	const sql = "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;"
	b.Run("pg_query", func(b *testing.B) {
		for range b.N {
			_ = literalFreeKey(sql)
		}
	})
	b.Run("fast", func(b *testing.B) {
		var buf []byte
		for range b.N {
			buf, _ = appendFastKey(buf[:0], sql)
		}
	})
}
