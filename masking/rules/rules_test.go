package rules_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"ward.dev/ward/crypto/secret"
	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/transform"
)

func testKeys(t testing.TB) *transform.Keys {
	t.Helper()
	k, err := transform.NewKeys(secret.New([]byte(strings.Repeat("k", 32))))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const goodRules = `version: 1
default: keep
columns:
  public.customer.email:
    transformer: email
    domain: keep
  public.customer.first_name: {transformer: fake, kind: first_name}
  public.customer.customer_id: keep
  public.customer.profile:
    - json: contact.phone
      transformer: partial
      keep_last: 2
    - json: tags[]
      transformer: hash
      bytes: 4
  public.customer.aliases:
    transformer: redact
    elements: true
  public.invoice.invoice_date: {transformer: date-shift, entity: customer_id, max_days: 20}
`

func TestParse(t *testing.T) {
	rs, err := rules.Parse("r.yaml", []byte(goodRules))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Rules) != 7 {
		t.Fatalf("len(Rules) = %d, want 7", len(rs.Rules))
	}
	r := rs.Rules[0]
	if r.Column.Object() != "column/public.customer.email" || r.Line != 4 || r.Params["domain"] != "keep" {
		t.Errorf("Rules[0] = %+v, want email at line 4 with domain keep", r)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"yaml syntax", "columns:\n  a.b.c: [\n", "r.yaml:2"},
		{"bad column", "columns:\n  customer.email: redact\n", "r.yaml:2: column \"customer.email\""},
		{"unknown top key", "default: keep\ncolums: {}\n", "r.yaml:2: unknown key \"colums\""},
		{"bad default", "default: scramble\n", "r.yaml:1: default \"scramble\""},
		{"no transformer", "columns:\n  a.b.c:\n    kind: name\n", "r.yaml:3: rule for a.b.c has no transformer"},
		{"duplicate rule", "columns:\n  a.b.c: redact\n  a.b.c: hash\n", "r.yaml:3"},
		{"whole and json rule", "columns:\n  a.b.c: redact\n  a.b.c:\n    - {json: x, transformer: hash}\n", "r.yaml:4"},
		{"list without json", "columns:\n  a.b.c:\n    - transformer: redact\n", "r.yaml:3"},
		{"nested param", "columns:\n  a.b.c:\n    transformer: hash\n    bytes: [1]\n", "r.yaml:4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rules.Parse("r.yaml", []byte(tc.doc))
			if !errors.Is(err, rules.ErrSyntax) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error = %v, want ErrSyntax containing %q", err, tc.want)
			}
		})
	}
}

func TestCompileErrorsNameLine(t *testing.T) {
	tests := []struct {
		name, doc, want string
		keys            bool
	}{
		{"unknown transformer", "columns:\n  a.b.c: scramble\n", "r.yaml:2: a.b.c: unknown transformer \"scramble\"", true},
		{"missing key", "columns:\n  a.b.c: hash\n", "r.yaml:2: a.b.c: hash: masking key missing", false},
		{"bad param", "columns:\n  a.b.c:\n    transformer: hash\n    bytes: 99\n", "r.yaml:2: a.b.c: hash: invalid transformer parameter", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := rules.Parse("r.yaml", []byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			var keys *transform.Keys
			if tc.keys {
				keys = testKeys(t)
			}
			_, err = rules.Compile(rs, nil, keys)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Compile error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func chinookLikeCatalog() *rules.Catalog {
	col := func(table, name, typ string, notNull, unique bool) rules.ColumnInfo {
		return rules.ColumnInfo{Column: rules.Column{Schema: "public", Table: table, Name: name}, Type: typ, NotNull: notNull, Unique: unique}
	}
	return &rules.Catalog{
		Tables: map[string][]rules.ColumnInfo{
			"public.customer": {
				col("customer", "customer_id", "integer", true, true),
				col("customer", "email", "character varying(60)", true, false),
				col("customer", "code", "character varying(20)", false, true),
			},
			"public.invoice": {
				col("invoice", "invoice_id", "integer", true, true),
				col("invoice", "customer_code", "character varying(20)", false, false),
			},
			"public.note": {
				col("note", "invoice_code", "character varying(20)", false, false),
			},
		},
		ForeignKeys: []rules.ForeignKey{
			{From: rules.Column{Schema: "public", Table: "invoice", Name: "customer_code"}, To: rules.Column{Schema: "public", Table: "customer", Name: "code"}},
			{From: rules.Column{Schema: "public", Table: "note", Name: "invoice_code"}, To: rules.Column{Schema: "public", Table: "invoice", Name: "customer_code"}},
		},
	}
}

func TestForeignKeyPropagation(t *testing.T) {
	rs, err := rules.Parse("r.yaml", []byte("columns:\n  public.customer.code: {transformer: fpe, alphabet: alnum}\n"))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := rules.Compile(rs, chinookLikeCatalog(), testKeys(t))
	if err != nil {
		t.Fatal(err)
	}

	cust, _ := plan.Table("public", "customer", []string{"customer_id", "email", "code"})
	inv, _ := plan.Table("public", "invoice", []string{"invoice_id", "customer_code"})
	note, _ := plan.Table("public", "note", []string{"invoice_code"})
	a := []rules.Field{{Text: "1"}, {Text: "a@b.c"}, {Text: "CUST0001"}}
	b := []rules.Field{{Text: "9"}, {Text: "CUST0001"}}
	c := []rules.Field{{Text: "CUST0001"}}
	for _, step := range []struct {
		t   *rules.Table
		row []rules.Field
	}{{cust, a}, {inv, b}, {note, c}} {
		if err := step.t.MaskRow(step.row); err != nil {
			t.Fatal(err)
		}
	}
	if a[2].Text == "CUST0001" || b[1].Text != a[2].Text || c[0].Text != a[2].Text {
		t.Errorf("masked key %q, referencing columns %q and %q, want all equal and changed", a[2].Text, b[1].Text, c[0].Text)
	}
}

func TestForeignKeyConflict(t *testing.T) {
	doc := "columns:\n  public.customer.code: {transformer: fpe, alphabet: alnum}\n  public.invoice.customer_code: {transformer: hash}\n"
	rs, _ := rules.Parse("r.yaml", []byte(doc))
	_, err := rules.Compile(rs, chinookLikeCatalog(), testKeys(t))
	if !errors.Is(err, rules.ErrConflict) || !strings.Contains(err.Error(), "r.yaml:3") {
		t.Errorf("Compile error = %v, want ErrConflict at r.yaml:3", err)
	}
}

func TestNonInjectiveOnUniqueRejected(t *testing.T) {
	rs, _ := rules.Parse("r.yaml", []byte("columns:\n  public.customer.code: redact\n"))
	_, err := rules.Compile(rs, chinookLikeCatalog(), testKeys(t))
	if err == nil || !strings.Contains(err.Error(), "r.yaml:2") || !strings.Contains(err.Error(), "injective") {
		t.Errorf("Compile error = %v, want a non-injective error at r.yaml:2", err)
	}
}

func TestStrict(t *testing.T) {
	rs, _ := rules.Parse("r.yaml", []byte("strict: true\ncolumns:\n  public.t.a: keep\n"))
	plan, err := rules.Compile(rs, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plan.Table("public", "t", []string{"a", "b"}); !errors.Is(err, rules.ErrUnclassified) || !strings.Contains(err.Error(), "b") {
		t.Errorf("Table error = %v, want ErrUnclassified naming b", err)
	}
	if _, err := plan.Table("public", "t", []string{"a"}); err != nil {
		t.Errorf("Table(a) error = %v, want nil", err)
	}
}

// compileGoodRules returns the plan of goodRules without a catalog.
func compileGoodRules(t *testing.T) *rules.Plan {
	t.Helper()
	rs, err := rules.Parse("r.yaml", []byte(goodRules))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := rules.Compile(rs, nil, testKeys(t))
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

func TestMaskRow(t *testing.T) {
	plan := compileGoodRules(t)
	tbl, err := plan.Table("public", "customer", []string{"customer_id", "first_name", "email", "profile", "aliases", "extra"})
	if err != nil {
		t.Fatal(err)
	}
	row := []rules.Field{
		{Text: "7"}, {Text: "Luís"}, {Text: "luisg@embraer.com.br"},
		{Text: `{"contact":{"phone":"+55 12 3923-5555"},"tags":["vip",7],"z":1}`},
		{Text: `{alpha,"b c",NULL}`}, {Null: true},
	}
	if err := tbl.MaskRow(row); err != nil {
		t.Fatal(err)
	}
	if row[0].Text != "7" || !row[5].Null {
		t.Errorf("kept columns changed: %+v", row)
	}
	if row[1].Text == "Luís" || !strings.HasSuffix(row[2].Text, "@embraer.com.br") {
		t.Errorf("first_name %q, email %q, want a fake name and a kept domain", row[1].Text, row[2].Text)
	}
	if !strings.Contains(row[3].Text, `"phone":"*** ** ****-**55"`) || strings.Contains(row[3].Text, "vip") || !strings.Contains(row[3].Text, `"z":1`) {
		t.Errorf("profile = %s, want masked phone and tags, z kept", row[3].Text)
	}
	if row[4].Text != "{REDACTED,REDACTED,NULL}" {
		t.Errorf("aliases = %s, want {REDACTED,REDACTED,NULL}", row[4].Text)
	}

	inv, _ := plan.Table("public", "invoice", []string{"invoice_id", "customer_id", "invoice_date"})
	r1 := []rules.Field{{Text: "1"}, {Text: "7"}, {Text: "2020-01-01 00:00:00"}}
	r2 := []rules.Field{{Text: "2"}, {Text: "7"}, {Text: "2020-01-11 00:00:00"}}
	_ = inv.MaskRow(r1)
	_ = inv.MaskRow(r2)
	if r1[2].Text[8:10] == "01" && r1[2].Text[5:7] == "01" {
		t.Errorf("invoice_date not shifted: %s", r1[2].Text)
	}
	if r1[2].Text[:4] == "" || r2[2].Text == r1[2].Text {
		t.Errorf("dates %s and %s, want shifted alike", r1[2].Text, r2[2].Text)
	}
}

// TestMaskFieldMatchesMaskRow masks each column alone, with MaskField and
// AppendField, and compares it with the same column masked within its row,
// entity-keyed dates included.
func TestMaskFieldMatchesMaskRow(t *testing.T) {
	plan := compileGoodRules(t)
	cases := []struct {
		table   string
		columns []string
		row     []rules.Field
		entity  map[int]int // masked column -> its entity column
	}{
		{"customer", []string{"customer_id", "first_name", "email", "profile", "aliases", "extra"}, []rules.Field{
			{Text: "7"}, {Text: "Luís"}, {Text: "luisg@embraer.com.br"},
			{Text: `{"contact":{"phone":"+55 12 3923-5555"},"tags":["vip",7],"z":1}`},
			{Text: `{alpha,"b c",NULL}`}, {Null: true},
		}, nil},
		{"invoice", []string{"invoice_id", "customer_id", "invoice_date"}, []rules.Field{
			{Text: "1"}, {Text: "7"}, {Text: "2020-01-01 00:00:00"},
		}, map[int]int{2: 1}},
	}
	for _, c := range cases {
		tbl, err := plan.Table("public", c.table, c.columns)
		if err != nil {
			t.Fatal(err)
		}
		whole := slices.Clone(c.row)
		if err := tbl.MaskRow(whole); err != nil {
			t.Fatal(err)
		}
		for i, f := range c.row {
			entity := ""
			if e, ok := c.entity[i]; ok {
				entity = c.row[e].Text
			}
			got, err := tbl.MaskField(i, f, entity)
			if err != nil {
				t.Fatalf("MaskField(%d) = %v", i, err)
			}
			if got != whole[i] {
				t.Errorf("%s.%s: MaskField = %+v, MaskRow gave %+v", c.table, c.columns[i], got, whole[i])
			}
			if f.Null {
				continue
			}
			out, null, err := tbl.AppendField([]byte("pre"), i, f.Text, entity)
			if err != nil || null != whole[i].Null || !null && string(out) != "pre"+whole[i].Text {
				t.Errorf("%s.%s: AppendField = %q, %v, %v; MaskRow gave %+v", c.table, c.columns[i], out, null, err, whole[i])
			}
		}
	}
	tbl, err := plan.Table("public", "invoice", []string{"invoice_id", "customer_id", "invoice_date"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.MaskField(3, rules.Field{Text: "x"}, ""); err == nil {
		t.Error("MaskField(3) on a three-column table = nil error, want out of range")
	}
}

func TestMaskRowMissingColumn(t *testing.T) {
	rs, _ := rules.Parse("r.yaml", []byte("columns:\n  public.t.gone: redact\n"))
	plan, _ := rules.Compile(rs, nil, nil)
	if _, err := plan.Table("public", "t", []string{"a"}); !errors.Is(err, rules.ErrNoColumn) || !strings.Contains(err.Error(), "r.yaml:2") {
		t.Errorf("Table error = %v, want ErrNoColumn at r.yaml:2", err)
	}
}

func TestValidate(t *testing.T) {
	doc := `columns:
  public.customer.email: null
  public.customer.code: partial
  public.invoice.customer_code: {transformer: tokenize}
  public.invoice.gone: redact
  public.missing.x: redact
  public.customer.customer_id: {transformer: date-shift}
`
	rs, err := rules.Parse("r.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	findings := rules.Validate(rs, chinookLikeCatalog(), testKeys(t), true)
	var text []string
	for _, f := range findings {
		text = append(text, f.String())
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{
		"r.yaml:2: public.customer.email: null on a NOT NULL column",
		"r.yaml:3: public.customer.code: partial is not injective",
		"r.yaml:4: public.invoice.customer_code: tokenize output has up to",
		"r.yaml:5: public.invoice.gone: column not found",
		"r.yaml:6: public.missing.x: table public.missing not found",
		"r.yaml:7: public.customer.customer_id: date-shift produces date, but the column is integer",
		"public.invoice.invoice_id: no rule classifies this column",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("Validate findings lack %q; got:\n%s", want, all)
		}
	}
}

func TestForeignKeyUniqueFake(t *testing.T) {
	rs, _ := rules.Parse("r.yaml", []byte("columns:\n  public.customer.code: {transformer: fake, kind: first_name}\n"))
	plan, err := rules.Compile(rs, chinookLikeCatalog(), testKeys(t))
	if err != nil {
		t.Fatal(err)
	}
	cust, _ := plan.Table("public", "customer", []string{"customer_id", "email", "code"})
	inv, _ := plan.Table("public", "invoice", []string{"invoice_id", "customer_code"})
	if !cust.Ordered() {
		t.Error("customer.Ordered() = false, want true for fake on a unique column")
	}
	for i := range 50 {
		code := fmt.Sprintf("C%03d", i)
		a := []rules.Field{{Text: "1"}, {Text: "a@b.c"}, {Text: code}}
		b := []rules.Field{{Text: "9"}, {Text: code}}
		if err := cust.MaskRow(a); err != nil {
			t.Fatal(err)
		}
		if err := inv.MaskRow(b); err != nil {
			t.Fatal(err)
		}
		if b[1].Text != a[2].Text {
			t.Fatalf("code %s: customer %q, invoice %q, want equal", code, a[2].Text, b[1].Text)
		}
	}
}

func TestDefaultMaskByType(t *testing.T) {
	rs, _ := rules.Parse("r.yaml", []byte("default: mask\ncolumns:\n  public.customer.customer_id: keep\n"))
	plan, err := rules.Compile(rs, chinookLikeCatalog(), testKeys(t))
	if err != nil {
		t.Fatal(err)
	}
	inv, _ := plan.Table("public", "invoice", []string{"invoice_id", "customer_code"})
	row := []rules.Field{{Text: "4"}, {Text: "CUST0001"}}
	if err := inv.MaskRow(row); err != nil {
		t.Fatal(err)
	}
	if !row[0].Null || row[1].Text != "REDACTED" {
		t.Errorf("row = %+v, want NULL for the integer and REDACTED for the text column", row)
	}
	findings := rules.Validate(rs, chinookLikeCatalog(), testKeys(t), false)
	var all []string
	for _, f := range findings {
		all = append(all, f.String())
	}
	if !strings.Contains(strings.Join(all, "\n"), "public.invoice.invoice_id: default mask sets NULL in this NOT NULL integer column") {
		t.Errorf("Validate findings = %v, want default mask on NOT NULL invoice_id", all)
	}
}

func TestTableRepeatedColumn(t *testing.T) {
	rs, _ := rules.Parse("r.yaml", []byte("columns:\n  public.t.email: redact\n"))
	plan, _ := rules.Compile(rs, nil, nil)
	if _, err := plan.Table("public", "t", []string{"email", "id", "email"}); err == nil {
		t.Error("Table with a repeated column succeeded, want an error")
	}
}
