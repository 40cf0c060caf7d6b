package static

import (
	"errors"
	"strings"

	"ward.dev/ward/masking/rules"
)

// COPY text format (PostgreSQL documentation, "COPY", File Formats): one
// row per line, fields separated by tabs, \N for NULL, and backslash
// escapes for backslash, tab, newline, carriage return and the others
// decodeCopyField handles.

var errCopyEscape = errors.New("invalid backslash escape in COPY data")

// decodeCopyRow splits one COPY text line into fields, reusing row.
func decodeCopyRow(line string, row []rules.Field) ([]rules.Field, error) {
	row = row[:0]
	for {
		field, rest, more := line, "", false
		if i := strings.IndexByte(line, '\t'); i >= 0 {
			field, rest, more = line[:i], line[i+1:], true
		}
		if field == `\N` {
			row = append(row, rules.Field{Null: true})
		} else {
			text, err := decodeCopyField(field)
			if err != nil {
				return nil, err
			}
			row = append(row, rules.Field{Text: text})
		}
		if !more {
			return row, nil
		}
		line = rest
	}
}

func decodeCopyField(s string) (string, error) {
	if strings.IndexByte(s, '\\') < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(s) {
			return "", errCopyEscape
		}
		switch c = s[i]; c {
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte('\v')
		case 'x':
			v, n := 0, 0
			for n < 2 && i+1 < len(s) && isHex(s[i+1]) {
				i++
				v = v*16 + hexVal(s[i])
				n++
			}
			if n == 0 {
				b.WriteByte('x')
				continue
			}
			b.WriteByte(byte(v))
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := int(c - '0')
			for n := 1; n < 3 && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '7'; n++ {
				i++
				v = v*8 + int(s[i]-'0')
			}
			b.WriteByte(byte(v))
		default:
			// PostgreSQL takes any other escaped character literally.
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexVal(c byte) int {
	switch {
	case c >= 'a':
		return int(c-'a') + 10
	case c >= 'A':
		return int(c-'A') + 10
	}
	return int(c - '0')
}

// copyEscapes marks the bytes that appendCopyRow escapes.
var copyEscapes = [256]bool{'\\': true, '\t': true, '\n': true, '\r': true}

// appendCopyRow appends row as one COPY text line with its newline.
func appendCopyRow(dst []byte, row []rules.Field) []byte {
	for i, f := range row {
		if i > 0 {
			dst = append(dst, '\t')
		}
		if f.Null {
			dst = append(dst, `\N`...)
			continue
		}

		// Runs of bytes that need no escape are appended whole.
		text, start := f.Text, 0
		for j := 0; j < len(text); j++ {
			c := text[j]
			if !copyEscapes[c] {
				continue
			}
			dst = append(dst, text[start:j]...)
			switch c {
			case '\\':
				dst = append(dst, `\\`...)
			case '\t':
				dst = append(dst, `\t`...)
			case '\n':
				dst = append(dst, `\n`...)
			case '\r':
				dst = append(dst, `\r`...)
			}
			start = j + 1
		}
		dst = append(dst, text[start:]...)
	}
	return append(dst, '\n')
}
