package pgproxy

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"ward.dev/ward/crypto/secret"
	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/transform"
)

// TestRowBatchMatchesMaskRow masks rows through a batch, on two goroutines
// and on one, and compares each row with maskRow's result. The relay's row
// is one reused message over a reused buffer, as pgproto3 returns it.
func TestRowBatchMatchesMaskRow(t *testing.T) {
	keys, err := transform.NewKeys(secret.New(bytes.Repeat([]byte("k"), 32)))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Parse("rules.yaml", []byte(`version: 1
default: keep
columns:
  public.person.email: email
  public.person.phone: {transformer: partial, keep_last: 2}
  public.person.name: redact
`))
	if err != nil {
		t.Fatal(err)
	}
	ruleset, err := rules.Compile(rs, nil, keys)
	if err != nil {
		t.Fatal(err)
	}
	table, err := ruleset.Table("public", "person", []string{"id", "email", "phone", "name"})
	if err != nil {
		t.Fatal(err)
	}
	masked := func(i int) columnAction {
		return columnAction{kind: actionMask, masker: &columnMasker{table: table, index: i}, oid: pgtype.TextOID, entity: -1}
	}
	plan := &resultPlan{masks: true, cols: []columnAction{
		{kind: actionKeep, oid: pgtype.Int4OID, entity: -1},
		masked(1), masked(2),
		{kind: actionRedact, oid: pgtype.TextOID, entity: -1},
	}}

	for _, n := range []int{1, parallelRows - 1, parallelRows, batchRows + 37} {
		t.Run(fmt.Sprint(n, " rows"), func(t *testing.T) {
			types := pgtype.NewMap()
			var want [][][]byte
			var got [][][]byte
			b := &rowBatch{}
			relayed := &pgproto3.DataRow{}
			buf := make([]byte, 0, 256)
			take := func() {
				for _, r := range b.take(types) {
					got = append(got, slices.Clone(r.Values))
				}
			}
			for i := range n {
				values := [][]byte{
					fmt.Appendf(nil, "%d", i),
					fmt.Appendf(nil, "person%d@example.com", i),
					fmt.Appendf(nil, "+1 555 %07d", i),
					nil,
				}
				if i%5 != 0 {
					values[3] = fmt.Appendf(nil, "Name %d", i)
				}
				own := &pgproto3.DataRow{Values: slices.Clone(values)}
				maskRow(plan, types, own)
				want = append(want, own.Values)

				buf = buf[:0]
				relayed.Values = relayed.Values[:0]
				for _, v := range values {
					if v == nil {
						relayed.Values = append(relayed.Values, nil)
						continue
					}
					start := len(buf)
					buf = append(buf, v...)
					relayed.Values = append(relayed.Values, buf[start:])
				}
				b.add(plan, relayed)
				if b.full() {
					take()
				}
			}
			take()
			if len(got) != len(want) {
				t.Fatalf("batch returned %d rows, want %d", len(got), len(want))
			}
			for i := range want {
				for j := range want[i] {
					if !bytes.Equal(got[i][j], want[i][j]) || (got[i][j] == nil) != (want[i][j] == nil) {
						t.Fatalf("row %d column %d = %q, want %q", i, j, got[i][j], want[i][j])
					}
				}
			}
		})
	}
}
