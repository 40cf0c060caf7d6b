package static

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"ward.dev/ward/masking/rules"
)

func pipelineTable(t *testing.T) *rules.Table {
	t.Helper()
	rs, err := rules.Parse("p.yaml", []byte("columns:\n  public.person.email: {transformer: partial, keep_last: 2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := rules.Compile(rs, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	table, err := plan.Table("public", "person", []string{"id", "email"})
	if err != nil {
		t.Fatal(err)
	}
	return table
}

// TestPipelineKeepsOrder masks rows spread over several batches and checks
// that they come out in input order.
func TestPipelineKeepsOrder(t *testing.T) {
	var in, want bytes.Buffer
	for i := range 3*batchRows + 17 {
		fmt.Fprintf(&in, "%d\tuser%d@example.org\n", i, i)
		email := fmt.Sprintf("user%d@example.org", i)
		fmt.Fprintf(&want, "%d\t%s\n", i, partialMask(email))
	}
	var out bytes.Buffer
	mw := &maskWriter{table: pipelineTable(t), out: &out}
	if _, err := mw.Write(in.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := mw.finish(); err != nil {
		t.Fatal(err)
	}
	if out.String() != want.String() {
		t.Errorf("masked rows differ from the expected rows in order")
	}
}

// partialMask masks s as partial with keep_last 2 does for ASCII text.
func partialMask(s string) string {
	var b strings.Builder
	for i, c := range []byte(s) {
		if i >= len(s)-2 || strings.IndexByte("@-. ", c) >= 0 {
			b.WriteByte(c)
		} else {
			b.WriteByte('*')
		}
	}
	return b.String()
}

// TestPipelineRowErrorNumber checks that a bad row in a later batch is
// reported with its own row number.
func TestPipelineRowErrorNumber(t *testing.T) {
	bad := int64(2*batchRows + 5)
	var in bytes.Buffer
	for i := int64(1); i <= 3*batchRows; i++ {
		if i == bad {
			in.WriteString("only one field\n")
			continue
		}
		fmt.Fprintf(&in, "%d\tuser%d@example.org\n", i, i)
	}
	mw := &maskWriter{table: pipelineTable(t), out: &bytes.Buffer{}}
	_, err := mw.Write(in.Bytes())
	if ferr := mw.finish(); err == nil {
		err = ferr
	}
	var rowErr *RowError
	if !errors.As(err, &rowErr) {
		t.Fatalf("error = %v, want a RowError", err)
	}
	if rowErr.Row != bad {
		t.Errorf("RowError.Row = %d, want %d", rowErr.Row, bad)
	}
}
