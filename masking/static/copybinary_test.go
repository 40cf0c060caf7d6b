package static

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"ward.dev/ward/masking/rules"
)

// binaryRows encodes rows of (id, email) as a COPY binary stream with an
// 8-byte integer id, as PostgreSQL sends a bigint. A NULL email is nil.
func binaryRows(emails []*string) []byte {
	out := []byte(binaryHeader)
	for i, e := range emails {
		row := []rules.Field{{Text: string(binary.BigEndian.AppendUint64(nil, uint64(i)))}, {Null: true}}
		if e != nil {
			row[1] = rules.Field{Text: *e}
		}
		out, _ = appendBinaryTuple(out, row)
	}
	return append(out, binaryTrailer...)
}

// TestBinaryMatchesText masks the same rows in the text and the binary
// format, the binary stream arriving in uneven pieces, and checks that
// every value comes out the same.
func TestBinaryMatchesText(t *testing.T) {
	var emails []*string
	var text bytes.Buffer
	for i := range 3*batchRows + 17 {
		if i%100 == 7 {
			emails = append(emails, nil)
			fmt.Fprintf(&text, "%d\t\\N\n", i)
			continue
		}
		// Tabs, newlines and backslashes are escaped in text only.
		e := fmt.Sprintf("user%d\t\\\n@example.org", i)
		emails = append(emails, &e)
		fmt.Fprintf(&text, "%d\t%s", i, appendCopyRow(nil, []rules.Field{{Text: e}}))
	}

	var textOut bytes.Buffer
	tw := &maskWriter{table: pipelineTable(t), out: &textOut}
	if _, err := tw.Write(text.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := tw.finish(); err != nil {
		t.Fatal(err)
	}

	var binOut bytes.Buffer
	bw := &maskWriter{table: pipelineTable(t), out: &binOut, binary: true}
	in := binaryRows(emails)
	for piece := 1; len(in) > 0; piece = piece%97 + 1 {
		n := min(piece, len(in))
		if _, err := bw.Write(in[:n]); err != nil {
			t.Fatal(err)
		}
		in = in[n:]
	}
	if err := bw.finish(); err != nil {
		t.Fatal(err)
	}
	if got, want := bw.rows, int64(len(emails)); got != want {
		t.Errorf("binary rows = %d, want %d", got, want)
	}

	// Decode both outputs to fields and compare the e-mails.
	lines := bytes.Split(bytes.TrimSuffix(textOut.Bytes(), []byte("\n")), []byte("\n"))
	data := binOut.Bytes()
	n, err := parseBinaryHeader(data)
	if err != nil || n == 0 {
		t.Fatalf("parseBinaryHeader(output) = %d, %v", n, err)
	}
	rest := string(data[n:])
	for i, line := range lines {
		textRow, err := decodeCopyRow(string(line), nil)
		if err != nil {
			t.Fatalf("text row %d: %v", i, err)
		}
		var binRow []rules.Field
		binRow, rest, err = decodeBinaryTuple(rest, nil)
		if err != nil {
			t.Fatalf("binary row %d: %v", i, err)
		}
		if textRow[1] != binRow[1] {
			t.Fatalf("row %d: binary e-mail %+v, text e-mail %+v", i, binRow[1], textRow[1])
		}
		if got := binary.BigEndian.Uint64([]byte(binRow[0].Text)); got != uint64(i) {
			t.Fatalf("row %d: binary id %d, want %d", i, got, i)
		}
	}
	if rest != binaryTrailer {
		t.Errorf("binary output ends in %q, want the trailer", rest)
	}
}

// TestBinaryMalformed feeds broken binary streams and checks that each
// fails with ErrFormat and the number of the row where it broke.
func TestBinaryMalformed(t *testing.T) {
	e := "a@example.org"
	good := binaryRows([]*string{&e, &e})
	header := len(binaryHeader)
	tuple := (len(good) - header - len(binaryTrailer)) / 2
	cases := []struct {
		name string
		in   []byte
		row  int64
	}{
		{"bad signature", append([]byte("PGCOPY\n\xff\r\n\x01"), good[11:]...), 1},
		{"oid flag", append(append([]byte(copySignature), 0, 1, 0, 0), good[15:]...), 1},
		{"too many fields", append(append(append([]byte{}, good[:header]...), 0, 3), good[header+2:]...), 1},
		{"negative length", append(append(append([]byte{}, good[:header+tuple+2]...), 0xff, 0xff, 0xff, 0xfe), good[header+tuple+6:]...), 2},
		{"data after trailer", append(append([]byte{}, good...), 0, 2), 3},
		{"no trailer", good[:len(good)-2], 3},
		{"cut inside a row", good[:header+tuple+5], 2},
		{"cut inside the header", good[:13], 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mw := &maskWriter{table: pipelineTable(t), out: &bytes.Buffer{}, binary: true}
			_, err := mw.Write(c.in)
			if ferr := mw.finish(); err == nil {
				err = ferr
			}
			var rowErr *RowError
			if !errors.As(err, &rowErr) || !errors.Is(err, ErrFormat) {
				t.Fatalf("error = %v, want a RowError with ErrFormat", err)
			}
			if rowErr.Row != c.row {
				t.Errorf("error row = %d, want %d", rowErr.Row, c.row)
			}
		})
	}
}

// FuzzMaskBinaryCopy feeds arbitrary bytes to the binary COPY reader, which
// must fail or succeed without panicking.
func FuzzMaskBinaryCopy(f *testing.F) {
	e := "a@example.org"
	f.Add(binaryRows([]*string{&e, nil}))
	f.Add([]byte(binaryHeader + "\x00\x02\xff\xff\xff\xff\x00\x00\x00\x01x" + binaryTrailer))
	f.Fuzz(func(t *testing.T, in []byte) {
		mw := &maskWriter{table: pipelineTable(t), out: &bytes.Buffer{}, binary: true}
		_, _ = mw.Write(in)
		_ = mw.finish()
	})
}

// TestMajorVersion reads the major version from server_version values.
func TestMajorVersion(t *testing.T) {
	cases := map[string]string{
		"15.18 (Debian 15.18-0+deb12u1)": "15",
		"16.4":                           "16",
		"17beta2":                        "17",
		"9.6.24":                         "9.6",
		"9.5":                            "9.5",
		"":                               "",
		"devel":                          "",
	}
	for in, want := range cases {
		if got := majorVersion(in); got != want {
			t.Errorf("majorVersion(%q) = %q, want %q", in, got, want)
		}
	}
}
