package pgproxy

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeCatalog serves a few Chinook-like relations without a database.
type fakeCatalog struct{ rels map[string]*relation }

func (c fakeCatalog) relationByName(_ context.Context, schema, name string) (*relation, error) {
	if schema == "" {
		schema = "public"
	}
	return c.rels[schema+"."+name], nil
}

func (c fakeCatalog) relationByOID(_ context.Context, oid uint32) (*relation, error) {
	for _, r := range c.rels {
		if r.OID == oid {
			return r, nil
		}
	}
	return nil, nil
}

func (c fakeCatalog) userFunction(_ context.Context, name string) (bool, error) {
	return name == "email_of", nil
}

func (c fakeCatalog) userOperator(_ context.Context, name string) (bool, error) {
	return name == "###", nil
}

func testCatalog() fakeCatalog {
	return fakeCatalog{rels: map[string]*relation{
		"public.customer": {OID: 1, Schema: "public", Name: "customer", Kind: 'r',
			Columns: []string{"customer_id", "first_name", "email", "phone"}, Attnums: []int16{1, 2, 3, 4}},
		"public.signup": {OID: 5, Schema: "public", Name: "signup", Kind: 'r',
			Columns: []string{"email", "email_lower"}, Attnums: []int16{1, 2}, Generated: []string{"", "lower(email)"}},
		"public.invoice": {OID: 2, Schema: "public", Name: "invoice", Kind: 'r',
			Columns: []string{"invoice_id", "customer_id", "total"}, Attnums: []int16{1, 2, 3}},
		"public.contact": {OID: 3, Schema: "public", Name: "contact", Kind: 'v',
			Columns: []string{"id", "mail"}, Attnums: []int16{1, 2},
			Definition: "SELECT customer_id, lower(email) FROM customer"},
		"pg_catalog.pg_stats": {OID: 4, Schema: "pg_catalog", Name: "pg_stats", Kind: 'v',
			Columns: []string{"most_common_vals"}, Attnums: []int16{1}, Definition: "SELECT 1"},
	}}
}

// lineageText renders each output's sources as "a+b", "?" marking unknown.
func lineageText(st *statement) string {
	if st.outputs == nil {
		return "error"
	}
	var parts []string
	for _, o := range st.outputs {
		var cols []string
		for _, c := range o.src.list() {
			cols = append(cols, c.Table+"."+c.Name)
		}
		s := strings.Join(cols, "+")
		if o.src.unknown {
			s += "?"
		}
		if s == "" {
			s = "-"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func TestStatementLineage(t *testing.T) {
	cases := []struct {
		name, sql, want string
	}{
		{"plain", "SELECT email FROM customer", "customer.email"},
		{"function", "SELECT lower(email), length(phone) FROM customer", "customer.email customer.phone"},
		{"operator", "SELECT email || phone FROM customer", "customer.email+customer.phone"},
		{"constant", "SELECT 1, now()", "- -"},
		{"cast and case", "SELECT CASE WHEN customer_id > 1 THEN email::text ELSE 'x' END FROM customer", "customer.customer_id+customer.email"},
		{"star", "SELECT * FROM customer", "customer.customer_id customer.first_name customer.email customer.phone"},
		{"qualified star", "SELECT i.*, c.email FROM invoice i JOIN customer c ON c.customer_id = i.customer_id", "invoice.invoice_id invoice.customer_id invoice.total customer.email"},
		{"subquery", "SELECT e FROM (SELECT email AS e FROM customer) s", "customer.email"},
		{"cte", "WITH c AS (SELECT email FROM customer) SELECT upper(email) FROM c", "customer.email"},
		{"cte column names", "WITH c(x) AS (SELECT email FROM customer) SELECT x FROM c", "customer.email"},
		{"scalar subquery", "SELECT (SELECT max(email) FROM customer)", "customer.email"},
		{"correlated", "SELECT total, (SELECT email FROM customer c WHERE c.customer_id = i.customer_id) FROM invoice i", "invoice.total customer.email"},
		{"union", "SELECT email FROM customer UNION SELECT first_name FROM customer", "customer.email+customer.first_name"},
		{"values", "VALUES (1, 'a')", "- -"},
		{"view", "SELECT mail FROM contact", "customer.email"},
		{"generated column", "SELECT email_lower FROM signup", "signup.email+signup.email_lower"},
		{"whole row", "SELECT c FROM customer c", "customer.customer_id+customer.email+customer.first_name+customer.phone"},
		{"row_to_json", "SELECT row_to_json(c.*) FROM customer c", "customer.customer_id+customer.email+customer.first_name+customer.phone"},
		{"aggregate", "SELECT count(*), string_agg(email, ',') FROM customer", "- customer.email"},
		{"user function", "SELECT email_of(1)", "?"},
		{"user operator", "SELECT 1 ### 2", "?"},
		{"builtin operator", "SELECT customer_id + 1, email LIKE 'a%' FROM customer", "customer.customer_id customer.email"},
		{"sql-running builtin", "SELECT query_to_xml('select 1', true, true, '')", "?"},
		{"ts_stat runs its query", "SELECT word FROM ts_stat('SELECT to_tsvector(email) FROM customer')", "?"},
		{"ts_rewrite runs its query", "SELECT ts_rewrite('a'::tsquery, 'SELECT email::tsquery, ''x''::tsquery FROM customer')", "?"},
		{"backend activity", "SELECT pg_stat_get_backend_activity(1)", "?"},
		{"activity function", "SELECT query FROM pg_stat_get_activity(NULL)", "?"},
		{"schema-qualified function", "SELECT public.lower(email) FROM customer", "customer.email?"},
		{"function in from", "SELECT x FROM unnest(ARRAY(SELECT email FROM customer)) x", "customer.email"},
		{"recursive cte", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r", "?"},
		{"returning", "UPDATE customer SET phone = '1' RETURNING email", "customer.email"},
		{"copy table", "COPY customer (email, phone) TO STDOUT", "customer.email customer.phone"},
		{"copy query", "COPY (SELECT lower(email) FROM customer) TO STDOUT", "customer.email"},
		{"star over using join", "SELECT * FROM customer JOIN invoice USING (customer_id)", "error"},
		{"unknown relation", "SELECT * FROM nowhere", "error"},
		{"explain", "EXPLAIN SELECT email FROM customer", "-"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stmts, err := parseStatements(context.Background(), testCatalog(), c.sql)
			if err != nil {
				t.Fatalf("parseStatements(%q): %v", c.sql, err)
			}
			if got := lineageText(stmts[0]); got != c.want {
				t.Errorf("lineage(%q) = %q, want %q", c.sql, got, c.want)
			}
		})
	}
}

func TestStatementChecks(t *testing.T) {
	cases := []struct {
		name, sql  string
		write      bool
		filters    string
		statsViews []string
		protected  bool
	}{
		{"select", "SELECT email FROM customer WHERE phone = '1' ORDER BY first_name", false, "customer.first_name customer.phone", nil, false},
		{"join on", "SELECT total FROM invoice i JOIN customer c ON c.email = 'x'", false, "customer.email", nil, false},
		{"group and distinct", "SELECT DISTINCT count(*) FROM customer GROUP BY email", false, "customer.email", nil, false},
		{"order by position", "SELECT customer_id, email FROM customer ORDER BY 1", false, "customer.customer_id customer.email", nil, false},
		{"group by position", "SELECT phone, count(*) FROM customer GROUP BY 1", false, "customer.phone", nil, false},
		{"rollup position", "SELECT phone, count(*) FROM customer GROUP BY ROLLUP (1)", false, "customer.phone", nil, false},
		{"distinct on position", "SELECT DISTINCT ON (2) customer_id, email FROM customer", false, "customer.customer_id customer.email", nil, false},
		{"plain distinct", "SELECT DISTINCT email FROM customer", false, "customer.email", nil, false},
		{"union order by position", "SELECT customer_id FROM invoice UNION ALL SELECT customer_id FROM customer ORDER BY 1", false, "customer.customer_id invoice.customer_id", nil, false},
		{"intersect", "SELECT email FROM customer INTERSECT SELECT 'a@b.c'", false, "customer.email", nil, false},
		{"union all", "SELECT email FROM customer UNION ALL SELECT 'a@b.c'", false, "", nil, false},
		{"order by expression", "SELECT email FROM customer ORDER BY customer_id + 1", false, "customer.customer_id", nil, false},
		{"insert", "INSERT INTO invoice VALUES (1, 1, 1)", true, "", nil, false},
		{"writable cte", "WITH d AS (DELETE FROM invoice RETURNING *) SELECT 1", true, "", nil, false},
		{"select into", "SELECT * INTO x FROM invoice", true, "", nil, false},
		{"set read write", "SET default_transaction_read_only = off", false, "", nil, true},
		{"set search_path", "SET search_path = other", false, "", nil, true},
		{"begin read write", "BEGIN READ WRITE", true, "", nil, false},
		{"begin", "BEGIN", false, "", nil, false},
		{"session read write", "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", true, "", nil, false},
		{"set_config", "SELECT set_config('default_transaction_read_only', 'off', false)", false, "", nil, true},
		{"reset", "RESET default_transaction_read_only", false, "", nil, true},
		{"set other", "SET work_mem = 65536", false, "", nil, false},
		{"copy from", "COPY invoice FROM STDIN", true, "", nil, false},
		{"explain analyze write", "EXPLAIN ANALYZE DELETE FROM invoice", true, "", nil, false},
		{"ddl", "DROP TABLE invoice", true, "", nil, false},
		{"pg_stats", "SELECT most_common_vals FROM pg_catalog.pg_stats", false, "", []string{"pg_catalog.pg_stats"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := firstStatement(t, c.sql)
			if st.write != c.write {
				t.Errorf("write(%q) = %v, want %v", c.sql, st.write, c.write)
			}
			if got := filterNames(st); got != c.filters {
				t.Errorf("filters(%q) = %q, want %q", c.sql, got, c.filters)
			}
			if got := st.protected != ""; got != c.protected {
				t.Errorf("protected(%q) = %q, want set %v", c.sql, st.protected, c.protected)
			}
			if !slices.Equal(st.statsViews, c.statsViews) {
				t.Errorf("statsViews(%q) = %v, want %v", c.sql, st.statsViews, c.statsViews)
			}
		})
	}
}

func TestLiteralFreeKey(t *testing.T) {
	same := [][2]string{
		{"SELECT abalance FROM a WHERE aid = 1;", "SELECT abalance FROM a WHERE aid = 77;"},
		{"SELECT 'x', email FROM customer", "select 'luis@x.org' ,email  FROM customer"},
	}
	for _, p := range same {
		if literalFreeKey(p[0]) != literalFreeKey(strings.Replace(p[1], "select", "SELECT", 1)) {
			t.Errorf("literalFreeKey(%q) != literalFreeKey(%q), want equal", p[0], p[1])
		}
	}
	verbatim := []string{
		"EXPLAIN (ANALYZE 'true') DELETE FROM invoice",
		"SET search_path = 'other'",
		"SELECT 1; SET search_path = 'x'",
		"SELECT email FROM customer WHERE 'unterminated",
	}
	for _, q := range verbatim {
		if got := literalFreeKey(q); got != q {
			t.Errorf("literalFreeKey(%q) = %q, want the text unchanged", q, got)
		}
	}
	if literalFreeKey("SELECT email FROM customer") == literalFreeKey("SELECT phone FROM customer") {
		t.Error("literalFreeKey maps different columns to one key")
	}
}

func TestCatalogCacheExpires(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newPGCatalog(nil, time.Second, func() time.Time { return now })
	c.byOID[1] = &relation{OID: 1}
	c.funcs["f"] = true

	c.lock()
	kept := len(c.byOID)
	c.mu.Unlock()
	if kept != 1 {
		t.Fatalf("cache emptied before catalogTTL")
	}

	now = now.Add(catalogTTL)
	c.lock()
	left := len(c.byOID) + len(c.funcs)
	c.mu.Unlock()
	if left != 0 {
		t.Errorf("cache holds %d entries after catalogTTL, want 0", left)
	}
}

// TestStatementRefusals covers statements rejected in every mode, writes
// hidden in function calls, and the conditions strict mode reads like
// WHERE ("?" for conditions whose columns are unknown).
func TestStatementRefusals(t *testing.T) {
	cases := []struct {
		name, sql string
		rejected  bool
		protected bool
		write     bool
		filter    string
	}{
		{"explain", "EXPLAIN SELECT email FROM customer", false, false, false, ""},
		{"explain analyze", "EXPLAIN ANALYZE SELECT 1", true, false, false, ""},
		{"explain analyze option", "EXPLAIN (ANALYZE, COSTS off) SELECT 1", true, false, false, ""},
		{"explain analyze set_config", "EXPLAIN ANALYZE SELECT set_config('client_encoding', 'SJIS', false)", true, true, false, ""},
		{"terminate", "SELECT pg_terminate_backend(4242)", true, false, false, ""},
		{"cancel", "SELECT pg_catalog.pg_cancel_backend(4242)", true, false, false, ""},
		{"query_to_xml", "SELECT query_to_xml('SELECT set_config(''role'', ''x'', false)', true, true, '')", true, false, false, ""},
		{"large object", "SELECT lo_from_bytea(0, 'x')", false, false, true, ""},
		{"large object unlink", "SELECT lo_unlink(4242)", false, false, true, ""},
		{"update pg_settings", "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'", false, true, true, ""},
		{"update pg_settings in with", "WITH u AS (UPDATE pg_catalog.pg_settings SET setting = 'off' WHERE name = 'x' RETURNING 1) SELECT 1", false, true, true, ""},
		{"case condition", "SELECT CASE WHEN email LIKE 'a%' THEN 1 / 0 ELSE 0 END FROM customer", false, false, false, "customer.email"},
		{"system_user", "SELECT system_user || '' FROM (SELECT email AS system_user FROM customer) s", true, false, false, ""},
		{"activity", "SELECT count(*) FROM pg_stat_get_activity(NULL)", true, false, false, ""},
		{"prepare set_config", "PREPARE p AS SELECT set_config('role', 'x', false)", false, true, true, ""},
		{"prepare terminate", "PREPARE p AS SELECT pg_terminate_backend(1)", true, false, true, ""},
		{"prepare condition", "PREPARE p AS SELECT 1 FROM customer WHERE email LIKE 'a%'", false, false, true, "customer.email"},
		{"function in from", "SELECT 1 FROM customer c, generate_series(1, ascii(c.email)) g", false, false, false, "customer.email"},
		{"join using", "SELECT 1 FROM customer a JOIN customer b USING (email)", false, false, false, "customer.email"},
		{"natural join", "SELECT 1 FROM customer a NATURAL JOIN customer b", false, false, false, "?"},
		{"intersect all", "SELECT email FROM customer INTERSECT ALL SELECT 'x'", false, false, false, "customer.email"},
		{"except all", "SELECT email FROM customer EXCEPT ALL SELECT 'x'", false, false, false, "customer.email"},
		{"comparison output", "SELECT (email LIKE 'a%')::text FROM customer", false, false, false, "customer.email"},
		{"null test output", "SELECT email IS NULL FROM customer", false, false, false, "customer.email"},
		{"set-returning output", "SELECT customer_id, generate_series(1, ascii(email)) FROM customer", false, false, false, "customer.email"},
		{"tablesample", "SELECT 1 FROM customer TABLESAMPLE BERNOULLI ((SELECT ascii(email) FROM customer LIMIT 1))", false, false, false, "customer.email"},
		{"frame offset", "SELECT count(*) OVER (ORDER BY customer_id ROWS BETWEEN (SELECT ascii(email) FROM customer LIMIT 1) PRECEDING AND CURRENT ROW) FROM customer", false, false, false, "customer.email"},
		{"explain condition", "EXPLAIN SELECT 1 FROM customer WHERE email < 'm'", false, false, false, "customer.email"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := firstStatement(t, c.sql)
			if (st.rejected != "") != c.rejected {
				t.Errorf("rejected(%q) = %q, want rejected %v", c.sql, st.rejected, c.rejected)
			}
			if (st.protected != "") != c.protected {
				t.Errorf("protected(%q) = %q, want protected %v", c.sql, st.protected, c.protected)
			}
			if st.write != c.write {
				t.Errorf("write(%q) = %v, want %v", c.sql, st.write, c.write)
			}
			if c.filter == "?" {
				if !st.filters.unknown {
					t.Errorf("filters(%q) are known, want them unknown", c.sql)
				}
			} else if got := filterNames(st); c.filter != "" && !slices.Contains(strings.Fields(got), c.filter) {
				t.Errorf("filters(%q) = %q, want %s among them", c.sql, got, c.filter)
			}
		})
	}
}

// firstStatement analyzes sql against testCatalog and returns its first
// statement.
func firstStatement(t *testing.T, sql string) *statement {
	t.Helper()
	stmts, err := parseStatements(context.Background(), testCatalog(), sql)
	if err != nil {
		t.Fatalf("parseStatements(%q): %v", sql, err)
	}
	return stmts[0]
}

// filterNames returns the columns st's conditions read, as table.column
// separated by spaces.
func filterNames(st *statement) string {
	var names []string
	for _, col := range st.filters.list() {
		names = append(names, col.Table+"."+col.Name)
	}
	return strings.Join(names, " ")
}

// TestNestedConditionsAnalyzed analyzes conditions nested 40 deep in each
// form that counts them for strict mode. A walk that repeated a nested
// node's work would pass maxWalkSteps and report unknown lineage.
func TestNestedConditionsAnalyzed(t *testing.T) {
	nest := func(inner, outer string) string {
		s := inner
		for range 40 {
			s = strings.ReplaceAll(outer, "X", s)
		}
		return s
	}
	for name, sql := range map[string]string{
		"comparison": "SELECT " + nest("email = 'x'", "(X) = true") + " FROM customer",
		"case":       "SELECT " + nest("1", "CASE WHEN X = 1 THEN 1 END") + " FROM customer",
		"window":     "SELECT " + nest("1", "(SELECT count(*) OVER (PARTITION BY X) FROM customer LIMIT 1)"),
		"series":     "SELECT " + nest("1", "generate_series(1, X)"),
	} {
		t.Run(name, func(t *testing.T) {
			st := firstStatement(t, sql)
			if st.lineageErr != nil || st.filters.unknown {
				t.Errorf("analysis of %s nested 40 deep: lineage error %v, unknown conditions %v; want both known", name, st.lineageErr, st.filters.unknown)
			}
		})
	}
}

// TestComputedColumns checks which columns strict mode counts as computed
// on: those inside an expression, but not those passed through as they
// are, by a subquery or UNION ALL.
func TestComputedColumns(t *testing.T) {
	cases := []struct{ sql, want string }{
		{"SELECT email FROM customer", ""},
		{"SELECT email FROM customer UNION ALL SELECT 'x'", ""},
		{"SELECT x FROM (SELECT email AS x FROM customer) s", ""},
		{"SELECT (SELECT email FROM customer LIMIT 1)", ""},
		{"SELECT 1 / (ascii(email) - 108) FROM customer", "customer.email"},
		{"SELECT email::int FROM customer", "customer.email"},
		{"SELECT x || '' FROM (SELECT email AS x FROM customer) s", "customer.email"},
		{"SELECT pg_sleep(ascii(email) / 100.0) FROM customer", "customer.email"},
		{"PREPARE p AS SELECT lower(email) FROM customer", "customer.email"},
	}
	for _, c := range cases {
		st := firstStatement(t, c.sql)
		var names []string
		for _, col := range st.computed.list() {
			names = append(names, col.Table+"."+col.Name)
		}
		if got := strings.Join(names, " "); got != c.want {
			t.Errorf("computed(%q) = %q, want %q", c.sql, got, c.want)
		}
	}
}
