package pgproxy

import (
	"bytes"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"
)

// maskCopyRow masks one row of COPY TO STDOUT, which PostgreSQL sends as
// one CopyData message: in text format fields separated by the delimiter,
// \N for NULL and backslash escapes; in CSV format fields quoted when
// needed and an unquoted empty field for NULL. It returns false when the
// row is malformed, and the caller then drops it rather than pass it.
func maskCopyRow(plan *resultPlan, types *pgtype.Map, format copyFormat, row []byte) ([]byte, bool) {
	if !plan.masks {
		return row, true
	}
	if !bytes.HasSuffix(row, []byte("\n")) {
		return nil, false
	}
	body := row[:len(row)-1]

	var values [][]byte
	var nulls []bool
	if format.csv {
		var ok bool
		if values, nulls, ok = splitCSV(body, format.delimiter); !ok {
			return nil, false
		}
	} else {
		for _, f := range splitText(body, format.delimiter) {
			if string(f) == `\N` {
				values, nulls = append(values, nil), append(nulls, true)
				continue
			}
			v, ok := unescapeCopy(f)
			if !ok {
				return nil, false
			}
			values, nulls = append(values, v), append(nulls, false)
		}
	}
	if len(values) != len(plan.cols) {
		return nil, false
	}

	var out bytes.Buffer
	for i, v := range values {
		if i > 0 {
			out.WriteByte(format.delimiter)
		}
		a := plan.cols[i]
		if !nulls[i] && a.kind != actionKeep {
			a.format = pgtype.TextFormatCode
			// NOTE: COPY rows are masked without entity values, so a
			// rule keyed by an entity column uses an empty key here.
			v, _ = maskValue(a, types, v, nil, nil)
		}
		switch {
		case nulls[i] || v == nil:
			if !format.csv {
				out.WriteString(`\N`)
			}
		case format.csv:
			out.WriteString(quoteCSV(v, format.delimiter))
		default:
			out.WriteString(escapeCopy(v, format.delimiter))
		}
	}
	out.WriteByte('\n')
	return out.Bytes(), true
}

// splitText splits a text-format row at delimiters that are not escaped
// by a backslash.
func splitText(row []byte, delim byte) [][]byte {
	var fields [][]byte
	start := 0
	for i := 0; i < len(row); i++ {
		switch row[i] {
		case '\\':
			i++
		case delim:
			fields = append(fields, row[start:i])
			start = i + 1
		}
	}
	return append(fields, row[start:])
}

// splitCSV splits one CSV record. A field in double quotes may contain the
// delimiter, doubled quotes and newlines; an unquoted empty field is NULL.
func splitCSV(rec []byte, delim byte) (values [][]byte, nulls []bool, ok bool) {
	for i := 0; ; {
		if i < len(rec) && rec[i] == '"' {
			var v []byte
			i++
			for {
				if i >= len(rec) {
					return nil, nil, false
				}
				if rec[i] == '"' {
					if i+1 < len(rec) && rec[i+1] == '"' {
						v = append(v, '"')
						i += 2
						continue
					}
					i++
					break
				}
				v = append(v, rec[i])
				i++
			}
			if v == nil {
				v = []byte{}
			}
			values, nulls = append(values, v), append(nulls, false)
		} else {
			j := i
			for j < len(rec) && rec[j] != delim {
				if rec[j] == '"' {
					return nil, nil, false
				}
				j++
			}
			empty := j == i
			values, nulls = append(values, rec[i:j]), append(nulls, empty)
			i = j
		}
		if i == len(rec) {
			return values, nulls, true
		}
		if rec[i] != delim {
			return nil, nil, false
		}
		i++
		if i == len(rec) {
			return append(values, nil), append(nulls, true), true
		}
	}
}

// quoteCSV returns v as a CSV field, quoted when it is empty (an unquoted
// empty field would read as NULL) or holds the delimiter, a quote, a line
// break or the end-of-data marker.
func quoteCSV(v []byte, delim byte) string {
	s := string(v)
	if s != "" && s != `\.` && !strings.ContainsAny(s, "\"\r\n"+string(delim)) {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func unescapeCopy(f []byte) ([]byte, bool) {
	if bytes.IndexByte(f, '\\') < 0 {
		return f, true
	}
	out := make([]byte, 0, len(f))
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(f) {
			return nil, false
		}
		switch f[i] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'v':
			out = append(out, '\v')
		case 'x':
			v, n := 0, 0
			for n < 2 && i+1 < len(f) && isHex(f[i+1]) {
				i++
				v = v*16 + hexVal(f[i])
				n++
			}
			if n == 0 {
				out = append(out, 'x')
				continue
			}
			out = append(out, byte(v))
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v, n := 0, 0
			for n < 3 && i < len(f) && f[i] >= '0' && f[i] <= '7' {
				v = v*8 + int(f[i]-'0')
				i++
				n++
			}
			i--
			out = append(out, byte(v))
		default:
			out = append(out, f[i])
		}
	}
	return out, true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	default:
		return int(c-'A') + 10
	}
}

var copyEscaper = strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`)

// escapeCopy escapes v for a text-format COPY field: backslash, tab, line
// breaks and a delimiter other than tab.
func escapeCopy(v []byte, delim byte) string {
	s := copyEscaper.Replace(string(v))
	if delim != '\t' {
		s = strings.ReplaceAll(s, string(delim), `\`+string(delim))
	}
	return s
}
