package static

import (
	"errors"
	"strings"
)

// SQL identifiers as pg_dump writes them: plain lowercase words, or double
// quoted with "" standing for one quote.
const identPattern = `(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)`

// qualifiedPattern is an identifier with an optional schema.
const qualifiedPattern = identPattern + `(?:\s*\.\s*` + identPattern + `)?`

var errIdent = errors.New("malformed SQL identifier list")

// splitIdents parses identifiers separated by sep, removing quotes. An
// unquoted identifier is kept as written: pg_dump quotes every name that
// is not already in lowercase.
func splitIdents(s string, sep byte) ([]string, error) {
	var out []string
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
			i++
		}
		var b strings.Builder
		if i < len(s) && s[i] == '"' {
			i++
			for {
				if i >= len(s) {
					return nil, errIdent
				}
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
				i++
			}
		} else {
			j := i
			for j < len(s) && s[j] != sep {
				j++
			}
			b.WriteString(strings.TrimSpace(s[i:j]))
			i = j
		}
		if b.Len() == 0 {
			return nil, errIdent
		}
		out = append(out, b.String())
		if i >= len(s) {
			return out, nil
		}
		if s[i] != sep {
			return nil, errIdent
		}
		i++
	}
}

// qualifiedName returns schema.table for a possibly quoted and possibly
// unqualified name; the schema defaults to public.
func qualifiedName(name string) (string, error) {
	parts, err := splitIdents(name, '.')
	switch {
	case err != nil:
		return "", err
	case len(parts) == 1:
		return "public." + parts[0], nil
	case len(parts) == 2:
		return parts[0] + "." + parts[1], nil
	}
	return "", errIdent
}
