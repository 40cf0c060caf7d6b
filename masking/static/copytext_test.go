package static

import (
	"math/rand/v2"
	"slices"
	"testing"

	"ward.dev/ward/masking/rules"
)

// appendCopyRowReference is appendCopyRow as a plain byte loop.
func appendCopyRowReference(dst []byte, row []rules.Field) []byte {
	for i, f := range row {
		if i > 0 {
			dst = append(dst, '\t')
		}
		if f.Null {
			dst = append(dst, `\N`...)
			continue
		}
		for j := 0; j < len(f.Text); j++ {
			switch c := f.Text[j]; c {
			case '\\':
				dst = append(dst, `\\`...)
			case '\t':
				dst = append(dst, `\t`...)
			case '\n':
				dst = append(dst, `\n`...)
			case '\r':
				dst = append(dst, `\r`...)
			default:
				dst = append(dst, c)
			}
		}
	}
	return append(dst, '\n')
}

// TestCopyRowEncoding checks on random rows that appendCopyRow writes what
// the byte loop writes, and that decodeCopyRow reads the row back.
func TestCopyRowEncoding(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	const chars = "ab \\\t\n\rNé\x00\x01"
	for range 5000 {
		row := make([]rules.Field, 1+r.IntN(5))
		for i := range row {
			if r.IntN(6) == 0 {
				row[i] = rules.Field{Null: true}
				continue
			}
			b := make([]byte, r.IntN(12))
			for j := range b {
				b[j] = chars[r.IntN(len(chars))]
			}
			row[i] = rules.Field{Text: string(b)}
		}

		line := appendCopyRow(nil, row)
		if want := appendCopyRowReference(nil, row); string(line) != string(want) {
			t.Fatalf("appendCopyRow(%+v) = %q, want %q", row, line, want)
		}
		back, err := decodeCopyRow(string(line[:len(line)-1]), nil)
		if err != nil || !slices.Equal(back, row) {
			t.Fatalf("decodeCopyRow(%q) = %+v, %v, want %+v", line, back, err, row)
		}
	}
}
