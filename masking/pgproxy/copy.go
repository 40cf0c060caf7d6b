package pgproxy

import (
	"bytes"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"
)

// maskCopyLine masks one row of COPY TO STDOUT in text format: fields
// separated by tabs, \N for NULL, backslash escapes, ending in a newline.
// It returns false when the line is malformed, and the caller then drops
// it rather than pass it.
func maskCopyLine(plan *resultPlan, types *pgtype.Map, line []byte) ([]byte, bool) {
	if !plan.masks {
		return line, true
	}
	if !bytes.HasSuffix(line, []byte("\n")) {
		return nil, false
	}
	fields := bytes.Split(line[:len(line)-1], []byte("\t"))
	if len(fields) != len(plan.cols) {
		return nil, false
	}

	var out bytes.Buffer
	for i, f := range fields {
		if i > 0 {
			out.WriteByte('\t')
		}
		a := plan.cols[i]
		if a.kind == actionKeep || string(f) == `\N` {
			out.Write(f)
			continue
		}
		v, ok := unescapeCopy(f)
		if !ok {
			return nil, false
		}
		a.format = pgtype.TextFormatCode
		// NOTE: COPY rows are masked without entity values, so a rule
		// keyed by an entity column uses an empty key here.
		masked := maskValue(a, types, v, nil)
		if masked == nil {
			out.WriteString(`\N`)
			continue
		}
		out.WriteString(escapeCopy(masked))
	}
	out.WriteByte('\n')
	return out.Bytes(), true
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

func escapeCopy(v []byte) string { return copyEscaper.Replace(string(v)) }
