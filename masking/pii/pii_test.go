package pii

import (
	"strings"
	"testing"

	"ward.dev/ward/crypto/secret"
	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/transform"
)

func TestValueMatches(t *testing.T) {
	tests := []struct {
		kind  Kind
		value string
		want  bool
	}{
		{Email, "luisg@embraer.com.br", true},
		{Email, "not an email", false},
		{Phone, "+55 (12) 3923-5555", true},
		{Phone, "12", false},
		{Card, "4111 1111 1111 1111", true},
		{Card, "4111 1111 1111 1112", false},
		{IBAN, "DE89 3704 0044 0532 0130 00", true},
		{IBAN, "DE89 3704 0044 0532 0130 01", false},
		{NationalID, "123-45-6789", true},
		{NationalID, "000-45-6789", false},
		{NationalID, "AB 12 34 56 C", true},
		{NationalID, "DA123456A", false},
		{IP, "192.0.2.1", true},
		{IP, "2001:db8::1", true},
		{IP, "1.2.3", false},
		{FullName, "Luís Gonçalves", true},
		{FullName, "AC/DC", false},
		{Address, "Theodor-Heuss-Straße 34", true},
		{Address, "11120 Jasper Ave NW", true},
	}
	for _, tc := range tests {
		if got := valueMatches(tc.kind, tc.value); got != tc.want {
			t.Errorf("valueMatches(%s, %q) = %v, want %v", tc.kind, tc.value, got, tc.want)
		}
	}
}

func TestHintFor(t *testing.T) {
	tests := []struct {
		table, column string
		want          Kind
	}{
		{"customer", "email", Email},
		{"customer", "fax", Fax},
		{"invoice", "billing_address", Address},
		{"employee", "birth_date", BirthDate},
		{"customer", "support_rep_id", ""},
		{"customer", "name", FullName},
		{"artist", "name", ""},
		{"invoice", "billing_postal_code", PostalCode},
		{"sessions", "client_ip", IP},
	}
	for _, tc := range tests {
		if got := hintFor(tc.table, tc.column); got != tc.want {
			t.Errorf("hintFor(%s, %s) = %q, want %q", tc.table, tc.column, got, tc.want)
		}
	}
}

func TestClassifyByValues(t *testing.T) {
	ci := rules.ColumnInfo{Column: rules.Column{Schema: "public", Table: "t", Name: "contact"}, Type: "text"}
	f, ok := classify(ci, "", []string{"a@example.com", "b@example.org", "c@example.net"})
	if !ok || f.Kind != Email || f.Confidence < 0.8 {
		t.Errorf("classify(e-mails) = %+v, %v, want email with confidence >= 0.8", f, ok)
	}
	if _, ok := classify(ci, "", []string{"red", "green", "blue"}); ok {
		t.Errorf("classify(colours) found personal data")
	}
}

func TestSuggestFollowsForeignKeys(t *testing.T) {
	col := func(table, name, typ string, unique bool) rules.ColumnInfo {
		return rules.ColumnInfo{Column: rules.Column{Schema: "public", Table: table, Name: name}, Type: typ, Unique: unique}
	}
	email := col("users", "email", "text", true)
	ref := col("orders", "user_email", "text", false)
	catalog := &rules.Catalog{
		Tables:      map[string][]rules.ColumnInfo{"public.users": {email}, "public.orders": {col("orders", "id", "integer", true), ref}},
		ForeignKeys: []rules.ForeignKey{{From: ref.Column, To: email.Column}},
	}
	findings := []Finding{
		{Column: email.Column, Name: email.Column.String(), Type: "text", Kind: Email, Confidence: 1, MinLen: 5},
		{Column: ref.Column, Name: ref.Column.String(), Type: "text", Kind: Email, Confidence: 1, MinLen: 5},
	}
	keys, err := transform.NewKeys(secret.New(make([]byte, 32)))
	if err != nil {
		t.Fatal(err)
	}
	out := Suggest(findings, catalog, keys)
	rs, err := rules.Parse("s.yaml", out)
	if err != nil {
		t.Fatalf("Parse(Suggest) = %v\n%s", err, out)
	}
	if problems := rules.Validate(rs, catalog, keys, true); len(problems) > 0 {
		t.Errorf("Validate(Suggest) = %v\n%s", problems, out)
	}
	if strings.Contains(string(out), "public.orders.user_email: keep") {
		t.Errorf("Suggest keeps a column that references a masked key:\n%s", out)
	}
}
