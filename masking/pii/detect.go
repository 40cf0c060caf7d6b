// Package pii finds columns that likely hold personal data. It looks for
// e-mail addresses, phone and fax numbers, payment card numbers (Luhn
// check), IBANs (ISO 13616 mod-97 check), US social security and UK
// National Insurance numbers, person names, postal addresses and their
// parts, birth dates and IP addresses. It samples values and combines how many match a pattern with what the
// column name suggests, and it writes a starting rules file.
//
// Detection is a heuristic: it reports a confidence, not a proof, and a
// generated rules file is meant for review. Sampled values stay in memory
// for the scan and are never logged or reported.
package pii

import (
	"math/big"
	"net"
	"regexp"
	"strings"
	"unicode"

	"ward.dev/ward/masking/transform"
)

// Kind is a kind of personal data.
type Kind string

// Kinds the scanner reports.
const (
	Email      Kind = "email"
	Phone      Kind = "phone"
	Fax        Kind = "fax"
	Card       Kind = "card"
	IBAN       Kind = "iban"
	NationalID Kind = "national_id"
	FirstName  Kind = "first_name"
	LastName   Kind = "last_name"
	FullName   Kind = "name"
	Address    Kind = "address"
	City       Kind = "city"
	State      Kind = "state"
	PostalCode Kind = "postal_code"
	Company    Kind = "company"
	BirthDate  Kind = "birth_date"
	IP         Kind = "ip"
)

var (
	emailRe = regexp.MustCompile(`^[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$`)
	phoneRe = regexp.MustCompile(`^\+?[0-9 ()./-]{7,24}$`)
	ibanRe  = regexp.MustCompile(`^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$`)
	ssnRe   = regexp.MustCompile(`^([0-8][0-9]{2})-([0-9]{2})-([0-9]{4})$`)
	// ninoRe is the UK National Insurance number format (HMRC): two
	// letters from restricted sets, six digits, a suffix A to D.
	ninoRe   = regexp.MustCompile(`^[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]$`)
	streetRe = regexp.MustCompile(`(?i)(^\d+[a-z]?[ ,]+\p{L}|\p{L}[ ,]+\d+[a-z]?$|\b(street|st\.|road|rd\.|avenue|ave|lane|blvd|strasse|straße|rua|via|calle|allee)\b)`)
)

func digits(s string) int {
	n := 0
	for _, r := range s {
		if r >= '0' && r <= '9' {
			n++
		}
	}
	return n
}

// valueMatches reports whether one value looks like kind.
func valueMatches(kind Kind, v string) bool {
	v = strings.TrimSpace(v)
	switch kind {
	case Email:
		return emailRe.MatchString(v)
	case Phone, Fax:
		d := digits(v)
		return phoneRe.MatchString(v) && d >= 7 && d <= 15
	case Card:
		d := digits(v)
		return d >= 13 && d <= 19 && transform.LuhnValid(v)
	case IBAN:
		s := strings.ToUpper(strings.ReplaceAll(v, " ", ""))
		return ibanRe.MatchString(s) && ibanValid(s)
	case NationalID:
		if ninoRe.MatchString(strings.ToUpper(v)) {
			return true
		}
		m := ssnRe.FindStringSubmatch(v)
		return m != nil && m[1] != "000" && m[1] != "666" && m[2] != "00" && m[3] != "0000"
	case FirstName, LastName, FullName, City, State:
		return looksLikeProperName(v, kind == FullName)
	case Address:
		return streetRe.MatchString(v)
	case PostalCode:
		d := digits(v)
		return len(v) >= 3 && len(v) <= 10 && d >= 2
	case Company:
		return v != "" && unicode.IsUpper([]rune(v)[0])
	case IP:
		return net.ParseIP(v) != nil || strings.Contains(v, "/") && net.ParseIP(strings.Split(v, "/")[0]) != nil
	case BirthDate:
		return len(v) >= 10 && v[4] == '-' && v[7] == '-'
	}
	return false
}

// looksLikeProperName accepts one to four capitalized words of letters,
// apostrophes, dots and hyphens.
func looksLikeProperName(v string, full bool) bool {
	words := strings.Fields(v)
	if len(words) == 0 || len(words) > 4 || full && len(words) < 2 {
		return false
	}
	for _, w := range words {
		r := []rune(w)
		if !unicode.IsUpper(r[0]) && !unicode.IsLetter(r[0]) {
			return false
		}
		for _, c := range r {
			if !unicode.IsLetter(c) && !strings.ContainsRune("'.-", c) {
				return false
			}
		}
	}
	return true
}

// ibanValid checks the ISO 13616 mod-97 checksum.
func ibanValid(s string) bool {
	rearranged := s[4:] + s[:4]
	var b strings.Builder
	for _, r := range rearranged {
		if r >= 'A' && r <= 'Z' {
			b.WriteString(big.NewInt(int64(r - 'A' + 10)).String())
		} else {
			b.WriteRune(r)
		}
	}
	n, ok := new(big.Int).SetString(b.String(), 10)
	return ok && new(big.Int).Mod(n, big.NewInt(97)).Int64() == 1
}

// nameHints maps words in column names to the kind they suggest.
var nameHints = []struct {
	words []string
	kind  Kind
}{
	{[]string{"email", "e_mail", "mail"}, Email},
	{[]string{"fax"}, Fax},
	{[]string{"phone", "mobile", "tel", "telephone", "cell"}, Phone},
	{[]string{"card", "pan", "cc_number", "card_number"}, Card},
	{[]string{"iban"}, IBAN},
	{[]string{"ssn", "national_id", "tax_id", "nin"}, NationalID},
	{[]string{"first_name", "firstname", "given_name", "forename"}, FirstName},
	{[]string{"last_name", "lastname", "surname", "family_name"}, LastName},
	{[]string{"full_name", "fullname", "contact_name"}, FullName},
	{[]string{"address", "street", "address_line", "addr"}, Address},
	{[]string{"city", "town"}, City},
	{[]string{"state", "province", "region"}, State},
	{[]string{"postal_code", "postcode", "zip", "zip_code"}, PostalCode},
	{[]string{"company", "employer", "organization", "organisation"}, Company},
	{[]string{"birth_date", "birthdate", "dob", "date_of_birth", "birthday"}, BirthDate},
	{[]string{"ip", "ip_address", "ipaddr", "client_ip", "remote_addr"}, IP},
}

// personTables are table name words under which a bare "name" column is a
// person's name rather than, say, an album's.
var personTables = []string{"customer", "employee", "user", "person", "people", "contact", "patient", "member", "staff", "client", "account"}

// hintFor returns the kind a column name suggests, or "".
func hintFor(table, column string) Kind {
	col := strings.ToLower(column)
	parts := strings.FieldsFunc(col, func(r rune) bool { return r == '_' || r == '-' })
	for _, h := range nameHints {
		for _, w := range h.words {
			if col == w || strings.HasSuffix(col, "_"+w) || strings.HasPrefix(col, w+"_") && !strings.HasSuffix(col, "_id") {
				return h.kind
			}
			for _, p := range parts {
				if p == w && len(w) > 3 && !strings.HasSuffix(col, "_id") {
					return h.kind
				}
			}
		}
	}
	if col == "name" {
		t := strings.ToLower(table)
		for _, p := range personTables {
			if strings.Contains(t, p) {
				return FullName
			}
		}
	}
	return ""
}

// valueKinds are the kinds recognised from values alone, without a name
// hint, because their patterns are specific enough.
var valueKinds = []Kind{Email, Card, IBAN, NationalID, IP, Phone}
