package static_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/masking/pii"
	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/static"
)

// TestChinookScan scans Chinook for personal data, checks that the
// generated rules pass strict validation, and copies the database with them.
func TestChinookScan(t *testing.T) {
	srv, srcDSN := chinookSource(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := connect(t, srcDSN)
	catalog, err := static.ReadCatalog(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	findings, err := pii.Scan(ctx, conn, catalog, pii.Options{})
	if err != nil {
		t.Fatal(err)
	}

	got := map[string]pii.Kind{}
	for _, f := range findings {
		got[f.Name] = f.Kind
	}
	for col, kind := range map[string]pii.Kind{
		"public.customer.email":              pii.Email,
		"public.employee.email":              pii.Email,
		"public.customer.phone":              pii.Phone,
		"public.customer.fax":                pii.Fax,
		"public.employee.fax":                pii.Fax,
		"public.customer.address":            pii.Address,
		"public.invoice.billing_address":     pii.Address,
		"public.customer.first_name":         pii.FirstName,
		"public.employee.last_name":          pii.LastName,
		"public.employee.birth_date":         pii.BirthDate,
		"public.customer.postal_code":        pii.PostalCode,
		"public.invoice.billing_city":        pii.City,
		"public.customer.company":            pii.Company,
		"public.employee.hire_date":          "",
		"public.artist.name":                 "",
		"public.track.composer":              "",
		"public.invoice.billing_country":     "",
		"public.customer.support_rep_id":     "",
		"public.invoice_line.unit_price":     "",
		"public.media_type.name":             "",
		"public.employee.title":              "",
		"public.playlist.name":               "",
		"public.customer.country":            "",
		"public.album.title":                 "",
		"public.genre.name":                  "",
		"public.invoice.billing_state":       pii.State,
		"public.employee.reports_to":         "",
		"public.track.name":                  "",
		"public.invoice.total":               "",
		"public.customer.state":              pii.State,
		"public.employee.phone":              pii.Phone,
		"public.employee.postal_code":        pii.PostalCode,
		"public.invoice.billing_postal_code": pii.PostalCode,
	} {
		if got[col] != kind {
			t.Errorf("Scan: %s = %q, want %q", col, got[col], kind)
		}
	}

	generated := pii.Suggest(findings, catalog, testKeys(t))
	rs, err := rules.Parse("generated.yaml", generated)
	if err != nil {
		t.Fatalf("generated rules do not parse: %v\n%s", err, generated)
	}
	if problems := rules.Validate(rs, catalog, testKeys(t), true); len(problems) > 0 {
		t.Fatalf("generated rules fail strict validation: %v\n%s", problems, generated)
	}
	if strings.Contains(string(generated), "TODO") {
		t.Errorf("generated rules leave findings unmasked:\n%s", generated)
	}

	dst := srv.CreateDB(t, "chinook_scanned")
	if _, err := static.CopyDatabase(ctx, rs, testKeys(t), static.DBOptions{Source: srcDSN, Target: dst, BinDir: srv.BinDir()}); err != nil {
		t.Errorf("CopyDatabase with generated rules: %v\n%s", err, generated)
	}
}
