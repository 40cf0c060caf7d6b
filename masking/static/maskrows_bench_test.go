package static

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"ward.dev/ward/crypto/secret"
	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/transform"
)

// BenchmarkMaskCopyRows masks COPY text rows with three masked columns
// through the batch pipeline, without a database, and copies the same rows
// through unmasked as the baseline.
func BenchmarkMaskCopyRows(b *testing.B) {
	keys, _ := transform.NewKeys(secret.New([]byte(strings.Repeat("b", 32))))
	rs, err := rules.Parse("bench.yaml", []byte(`columns:
  public.person.name: {transformer: fake, kind: name}
  public.person.email: email
  public.person.phone: {transformer: fpe, keep_first: 1}
`))
	if err != nil {
		b.Fatal(err)
	}
	plan, err := rules.Compile(rs, nil, keys)
	if err != nil {
		b.Fatal(err)
	}
	masked, _ := plan.Table("public", "person", []string{"id", "name", "email", "phone", "joined"})
	kept, _ := plan.Table("public", "other", []string{"id", "name", "email", "phone", "joined"})

	var data strings.Builder
	for i := range 4096 {
		fmt.Fprintf(&data, "%d\tPerson %d\tperson%d@example.org\t+1 (555) %07d\t2001-02-03\n", i, i, i, i)
	}
	chunk := []byte(data.String())

	for _, c := range []struct {
		name  string
		table *rules.Table
	}{{"masked", masked}, {"copied-baseline", kept}} {
		b.Run(c.name, func(b *testing.B) {
			rows := 0
			for b.Loop() {
				mw := &maskWriter{table: c.table, out: io.Discard}
				if _, err := mw.Write(chunk); err != nil {
					b.Fatal(err)
				}
				if err := mw.finish(); err != nil {
					b.Fatal(err)
				}
				rows += 4096
			}
			b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
