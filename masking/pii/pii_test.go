package pii

import (
	"testing"

	"ward.dev/ward/masking/rules"
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
