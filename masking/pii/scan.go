package pii

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/transform"
)

// Finding is a column that likely holds personal data.
type Finding struct {
	Column     rules.Column `json:"-"`
	Name       string       `json:"column"` // schema.table.column
	Type       string       `json:"type"`
	Kind       Kind         `json:"kind"`
	Confidence float64      `json:"confidence"` // 0 to 1
	Sampled    int          `json:"sampled"`    // non-NULL values read
	Matched    int          `json:"matched"`    // values that fit the kind's pattern
	// MinDigits is the fewest digits in a sampled value, used to pick a
	// transformer that can mask every value.
	MinDigits int `json:"-"`
	MinLen    int `json:"-"`
}

// Options configures Scan.
type Options struct {
	// Sample is the number of non-NULL values read per column; 0 means 200.
	Sample int
	// MinConfidence drops weaker findings; 0 means 0.5.
	MinConfidence float64
}

// Scan samples the text-like columns of every table in catalog over conn
// and returns the likely personal-data columns, sorted by column name.
func Scan(ctx context.Context, conn *pgx.Conn, catalog *rules.Catalog, opts Options) ([]Finding, error) {
	if opts.Sample <= 0 {
		opts.Sample = 200
	}
	if opts.MinConfidence <= 0 {
		opts.MinConfidence = 0.5
	}
	var out []Finding
	for _, cols := range catalog.Tables {
		for _, ci := range cols {
			hint := hintFor(ci.Column.Table, ci.Column.Name)
			if !sampled(ci, hint) {
				continue
			}
			values, err := sample(ctx, conn, ci.Column, opts.Sample)
			if err != nil {
				return nil, err
			}
			if f, ok := classify(ci, hint, values); ok && f.Confidence >= opts.MinConfidence {
				out = append(out, f)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// sampled reports whether a column's type can hold the kinds scanned for.
func sampled(ci rules.ColumnInfo, hint Kind) bool {
	switch {
	case ci.Type == "inet" || ci.Type == "cidr":
		return true
	case ci.Kind() == transform.KindDate:
		return hint == BirthDate
	case ci.Kind() != transform.KindText || ci.IsArray() || ci.IsJSON():
		return false
	}
	t := ci.Type
	return strings.HasPrefix(t, "character") || strings.HasPrefix(t, "varchar") || t == "text" || t == "citext" || t == "name"
}

func sample(ctx context.Context, conn *pgx.Conn, col rules.Column, n int) ([]string, error) {
	ident := pgx.Identifier{col.Name}.Sanitize()
	q := fmt.Sprintf("SELECT %s::text FROM %s WHERE %s IS NOT NULL LIMIT %d", ident, pgx.Identifier{col.Schema, col.Table}.Sanitize(), ident, n)
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("sampling %s: %w", col, err)
	}
	values, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("sampling %s: %w", col, err)
	}
	return values, nil
}

// nameLedKinds have weak value patterns, so the column name carries most of
// the evidence.
var nameLedKinds = map[Kind]bool{FirstName: true, LastName: true, FullName: true, City: true, State: true, Company: true, Address: true, PostalCode: true, BirthDate: true}

func classify(ci rules.ColumnInfo, hint Kind, values []string) (Finding, bool) {
	f := Finding{Column: ci.Column, Name: ci.Column.String(), Type: ci.Type, Sampled: len(values), MinDigits: -1, MinLen: -1}
	if len(values) == 0 {
		return f, false
	}
	for _, v := range values {
		d, l := digits(v), len([]rune(v))
		if f.MinDigits < 0 || d < f.MinDigits {
			f.MinDigits = d
		}
		if f.MinLen < 0 || l < f.MinLen {
			f.MinLen = l
		}
	}

	ratio := func(k Kind) (int, float64) {
		n := 0
		for _, v := range values {
			if valueMatches(k, v) {
				n++
			}
		}
		return n, float64(n) / float64(len(values))
	}

	if hint != "" {
		n, r := ratio(hint)
		conf := 0.3 + 0.7*r
		if nameLedKinds[hint] {
			conf = 0.6 + 0.4*r
		}
		if r >= 0.5 || nameLedKinds[hint] {
			f.Kind, f.Matched, f.Confidence = hint, n, round(conf)
			return f, true
		}
	}
	for _, k := range valueKinds {
		n, r := ratio(k)
		if r >= 0.8 {
			f.Kind, f.Matched, f.Confidence = k, n, round(0.9*r)
			return f, true
		}
	}
	return f, false
}

func round(x float64) float64 { return float64(int(x*100+0.5)) / 100 }
