package static_test

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ward.dev/ward/crypto/secret"
	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/static"
	"ward.dev/ward/masking/transform"
)

func testKeys(t testing.TB) *transform.Keys {
	t.Helper()
	k, err := transform.NewKeys(secret.New([]byte(strings.Repeat("s", 32))))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func loadRules(t testing.TB, path string) *rules.Ruleset {
	t.Helper()
	rs, err := rules.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func maskFile(t *testing.T, in string, format static.Format) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out"+filepath.Ext(in))
	_, err := static.MaskFile(loadRules(t, "testdata/rules.yaml"), testKeys(t), in, out,
		static.FileOptions{Format: format, Table: "public.customer"})
	if err != nil {
		t.Fatalf("MaskFile(%s): %v", in, err)
	}
	return out
}

// csvRows reads masked customers keyed by customer_id, with NULL as "\N".
func csvRows(t *testing.T, path string) map[string][]string {
	f, _ := os.Open(path)
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, r := range recs[1:] {
		for i := range r {
			if r[i] == "" {
				r[i] = `\N`
			}
		}
		out[r[0]] = r
	}
	return out
}

func jsonlRows(t *testing.T, path string) map[string][]string {
	f, _ := os.Open(path)
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("masked JSON line %q: %v", sc.Text(), err)
		}
		var row []string
		for _, k := range []string{"customer_id", "first_name", "email", "phone", "code"} {
			switch v := m[k].(type) {
			case nil:
				row = append(row, `\N`)
			case string:
				row = append(row, v)
			case float64:
				row = append(row, jsonNum(v))
			}
		}
		out[row[0]] = row
	}
	return out
}

func jsonNum(v float64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// dumpRows reads the customer COPY block and the invoice INSERT rows.
func dumpRows(t *testing.T, path string) (map[string][]string, string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	text := string(data)
	start := strings.Index(text, "FROM stdin;\n") + len("FROM stdin;\n")
	end := strings.Index(text, "\n\\.\n")
	for _, line := range strings.Split(text[start:end], "\n") {
		f := strings.Split(line, "\t")
		for i := range f {
			f[i] = strings.ReplaceAll(strings.ReplaceAll(f[i], `\t`, "\t"), `\\`, `\`)
		}
		out[f[0]] = f
	}
	return out, text[end:]
}

func TestFormatsAgree(t *testing.T) {
	fromCSV := csvRows(t, maskFile(t, "testdata/customer.csv", static.FormatCSV))
	fromJSON := jsonlRows(t, maskFile(t, "testdata/customer.jsonl", static.FormatJSONL))
	fromDump, invoices := dumpRows(t, maskFile(t, "testdata/dump.sql", static.FormatPGDump))

	original := csvRows(t, "testdata/customer.csv")
	for id, want := range fromDump {
		if got := strings.Join(fromCSV[id], "|"); got != strings.Join(want, "|") {
			t.Errorf("customer %s: CSV %q, dump %q", id, got, strings.Join(want, "|"))
		}
		if got := strings.Join(fromJSON[id], "|"); got != strings.Join(want, "|") {
			t.Errorf("customer %s: JSONL %q, dump %q", id, got, strings.Join(want, "|"))
		}
		for col := 1; col < len(want); col++ {
			if want[col] == original[id][col] && want[col] != `\N` {
				t.Errorf("customer %s column %d kept its value %q", id, col, want[col])
			}
		}
		// The invoice rows reference customer.code, so they carry the
		// same masked code.
		if !strings.Contains(invoices, "'"+want[4]+"'") {
			t.Errorf("invoices lack masked code %q of customer %s:\n%s", want[4], id, invoices)
		}
	}
	if len(fromDump) != 3 {
		t.Errorf("dump has %d customers, want 3", len(fromDump))
	}
}

func TestMalformedCopyLeavesNoOutput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "bad.sql")
	data, _ := os.ReadFile("testdata/dump.sql")
	bad := strings.Replace(string(data), "2\tLeonie\t", "2\tLeonie", 1)
	if err := os.WriteFile(in, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.sql")
	_, err := static.MaskFile(loadRules(t, "testdata/rules.yaml"), testKeys(t), in, out, static.FileOptions{Format: static.FormatPGDump})
	var re *static.RowError
	if !errors.As(err, &re) || re.Line != 23 || re.Row != 2 || re.Table != "public.customer" {
		t.Fatalf("MaskFile error = %v, want a RowError at line 23, public.customer row 2", err)
	}
	if !strings.Contains(err.Error(), "bad.sql:23: table public.customer row 2:") {
		t.Errorf("error text %q lacks file:line and table row", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory has %d entries after a failed run, want only the input", len(entries))
	}
}

func TestTransformFailureNamesRow(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "c.csv")
	os.WriteFile(in, []byte("code\nAB12CD34\nX1\n"), 0o600)
	rs, _ := rules.Parse("r.yaml", []byte("columns:\n  public.c.code: {transformer: fpe, alphabet: alnum}\n"))
	_, err := static.MaskFile(rs, testKeys(t), in, filepath.Join(dir, "o.csv"), static.FileOptions{Format: static.FormatCSV})
	if err == nil || !strings.Contains(err.Error(), "c.csv:3: table public.c row 2: column code:") {
		t.Errorf("MaskFile error = %v, want c.csv:3, row 2, column code", err)
	}
	if strings.Contains(err.Error(), "X1") {
		t.Errorf("error %q contains the value", err)
	}
}

func TestScanDumpCatalog(t *testing.T) {
	f, _ := os.Open("testdata/dump.sql")
	defer f.Close()
	cat, err := static.ScanDumpCatalog(f)
	if err != nil {
		t.Fatal(err)
	}
	code, ok := cat.Lookup(rules.Column{Schema: "public", Table: "customer", Name: "code"})
	if !ok || !code.Unique || code.Type != "character varying(20)" {
		t.Errorf("customer.code = %+v, want unique character varying(20)", code)
	}
	id, _ := cat.Lookup(rules.Column{Schema: "public", Table: "customer", Name: "customer_id"})
	if !id.Unique || !id.NotNull || id.Type != "integer" {
		t.Errorf("customer.customer_id = %+v, want unique NOT NULL integer", id)
	}
	total, _ := cat.Lookup(rules.Column{Schema: "public", Table: "invoice", Name: "total"})
	if total.Type != "numeric(10,2)" {
		t.Errorf("invoice.total type = %q, want numeric(10,2)", total.Type)
	}
	if len(cat.ForeignKeys) != 1 || cat.ForeignKeys[0].To.Name != "code" {
		t.Errorf("ForeignKeys = %+v, want invoice.customer_code -> customer.code", cat.ForeignKeys)
	}
}

func TestDumpQuotedNames(t *testing.T) {
	script := "COPY public.\"My Table\" (\"Email, Primary\", \"x\"\"y\") FROM stdin;\na@b.org\tkeep\n\\.\n" +
		"INSERT INTO public.\"My Table\" (\"Email, Primary\", \"x\"\"y\") VALUES ('c@d.org', 'keep');\n"
	rs, err := rules.Parse("r.yaml", []byte("columns:\n  \"public.My Table.Email, Primary\": hash\n"))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := rules.Compile(rs, nil, testKeys(t))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := static.MaskDump(strings.NewReader(script), &out, plan, nil, "q.sql", nil); err != nil {
		t.Fatalf("MaskDump: %v", err)
	}
	if strings.Contains(out.String(), "a@b.org") || strings.Contains(out.String(), "c@d.org") || !strings.Contains(out.String(), "\tkeep\n") {
		t.Errorf("masked dump:\n%s\nwant both e-mails hashed and keep kept", out.String())
	}
}

func TestDumpUnreadableCopyFails(t *testing.T) {
	rs, _ := rules.Parse("r.yaml", []byte("columns:\n  public.t.a: hash\n"))
	plan, _ := rules.Compile(rs, nil, testKeys(t))
	script := "SELECT 1;\nCOPY public.t (a FROM stdin;\nsecret\n\\.\n"
	var out strings.Builder
	err := static.MaskDump(strings.NewReader(script), &out, plan, nil, "u.sql", nil)
	if err == nil || !strings.Contains(err.Error(), "u.sql:2:") {
		t.Errorf("MaskDump error = %v, want a failure at u.sql:2", err)
	}
	if strings.Contains(out.String(), "secret") {
		t.Errorf("output contains the row of the unreadable COPY block")
	}
}

func TestDumpLowercaseStatements(t *testing.T) {
	rs, _ := rules.Parse("r.yaml", []byte("columns:\n  public.t.a: hash\n"))
	plan, _ := rules.Compile(rs, nil, testKeys(t))
	tests := []struct{ name, script string }{
		{"lowercase insert", "insert into t (a) values ('secret');\n"},
		{"indented insert", "  INSERT INTO public.t (a) VALUES ('secret');\n"},
		{"lowercase copy", "copy public.t (a) from stdin;\nsecret\n\\.\n"},
		{"copy with options", "COPY public.t (a) FROM stdin WITH (FORMAT csv);\nsecret\n\\.\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			err := static.MaskDump(strings.NewReader(tc.script), &out, plan, nil, "l.sql", nil)
			if strings.Contains(out.String(), "secret") {
				t.Errorf("output %q contains the original value (error %v)", out.String(), err)
			}
		})
	}
}

func TestCSVWrongTableFails(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "o.csv")
	_, err := static.MaskFile(loadRules(t, "testdata/rules.yaml"), testKeys(t), "testdata/customer.csv", out,
		static.FileOptions{Format: static.FormatCSV, Table: "public.customers"})
	if err == nil || !strings.Contains(err.Error(), "no rule names a column of table public.customers") {
		t.Errorf("MaskFile(wrong table) error = %v, want no rule names table public.customers", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output exists after the failure")
	}
}

// TestDumpRefusesStatementsItCannotMask checks that statements that write
// rows but are not where the masker reads them make the run fail, instead of
// being copied out unmasked.
func TestDumpRefusesStatementsItCannotMask(t *testing.T) {
	for name, stmt := range map[string]string{
		"copy after a comment":   "/* c */ COPY public.t (a) FROM stdin;\ns1\n\\.",
		"insert after a comment": "/* c */ INSERT INTO public.t (a) VALUES ('s1');",
		"insert after select":    "SELECT 1; INSERT INTO public.t (a) VALUES ('s4');",
		"update":                 "UPDATE public.t SET a = 's10';",
		"create table as":        "CREATE TABLE public.u AS SELECT 's11' AS a;",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "in.sql")
			out := filepath.Join(dir, "out.sql")
			dump := "CREATE TABLE public.t (\n    a text\n);\n" + stmt + "\n"
			if err := os.WriteFile(in, []byte(dump), 0o600); err != nil {
				t.Fatal(err)
			}
			rs, err := rules.Parse("rules.yaml", []byte("version: 1\ndefault: keep\ncolumns:\n  public.t.a: redact\n"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = static.MaskFile(rs, testKeys(t), in, out, static.FileOptions{Format: static.FormatPGDump})
			if err == nil {
				t.Fatalf("masking %q succeeded, want a refusal", stmt)
			}
			if _, statErr := os.Stat(out); statErr == nil {
				t.Error("an output file was left behind")
			}
		})
	}
}
