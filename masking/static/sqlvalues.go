package static

import (
	"errors"
	"fmt"
	"strings"

	"ward.dev/ward/masking/rules"
)

// sqlValue is one value of an INSERT tuple.
type sqlValue struct {
	raw  string // the original SQL text
	text string // the value of a string or number literal
	null bool
	// literal is true for string and number literals, which can be masked;
	// any other expression (a function call, an array constructor) cannot.
	literal bool
	cast    string // a trailing ::type, kept on output
}

var errOpaque = errors.New("value is an SQL expression, not a literal, so it cannot be masked")

// parseTuples parses "(v, ...), (v, ...)" starting at s[i] and returns the
// tuples and the index after the last one.
func parseTuples(s string, i int) ([][]sqlValue, int, error) {
	var tuples [][]sqlValue
	for {
		i = skipSpace(s, i)
		if i >= len(s) || s[i] != '(' {
			return nil, i, fmt.Errorf("%w: expected ( at offset %d of the INSERT statement", ErrFormat, i)
		}
		i++
		var tuple []sqlValue
		for {
			i = skipSpace(s, i)
			v, next, err := parseValue(s, i)
			if err != nil {
				return nil, i, err
			}
			tuple = append(tuple, v)
			i = skipSpace(s, next)
			if i < len(s) && s[i] == ',' {
				i++
				continue
			}
			if i < len(s) && s[i] == ')' {
				i++
				break
			}
			return nil, i, fmt.Errorf("%w: expected , or ) at offset %d of the INSERT statement", ErrFormat, i)
		}
		tuples = append(tuples, tuple)
		j := skipSpace(s, i)
		if j < len(s) && s[j] == ',' {
			i = j + 1
			continue
		}
		return tuples, i, nil
	}
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

func parseValue(s string, i int) (sqlValue, int, error) {
	start := i
	escape := false
	if i+1 < len(s) && s[i+1] == '\'' && strings.ContainsRune("EeNn", rune(s[i])) {
		escape = s[i] == 'E' || s[i] == 'e'
		i++
	}
	if i < len(s) && s[i] == '\'' {
		text, next, err := readQuoted(s, i, escape)
		if err != nil {
			return sqlValue{}, i, err
		}
		end := scanExpr(s, next)
		v := sqlValue{raw: s[start:end], text: text, literal: true}
		rest := strings.TrimSpace(s[next:end])
		if rest != "" {
			if !strings.HasPrefix(rest, "::") {
				v.literal = false
			}
			v.cast = rest
		}
		return v, end, nil
	}

	end := scanExpr(s, i)
	raw := strings.TrimSpace(s[i:end])
	if raw == "" {
		return sqlValue{}, i, fmt.Errorf("%w: empty value at offset %d of the INSERT statement", ErrFormat, i)
	}
	if strings.EqualFold(raw, "NULL") {
		return sqlValue{raw: raw, null: true, literal: true}, end, nil
	}
	return sqlValue{raw: raw, text: raw, literal: isNumeric(raw)}, end, nil
}

// readQuoted reads the string literal whose opening quote is s[i].
func readQuoted(s string, i int, escape bool) (string, int, error) {
	var b strings.Builder
	for i++; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' && i+1 < len(s) && s[i+1] == '\'':
			b.WriteByte('\'')
			i++
		case c == '\'':
			return b.String(), i + 1, nil
		case c == '\\' && escape && i+1 < len(s):
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			default:
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", i, fmt.Errorf("%w: unterminated string literal", ErrFormat)
}

// scanExpr returns the index of the , or ) that ends the expression at
// s[i], skipping nested parentheses and quoted strings.
func scanExpr(s string, i int) int {
	depth := 0
	for ; i < len(s); i++ {
		switch s[i] {
		case '\'':
			_, next, err := readQuoted(s, i, false)
			if err != nil {
				return len(s)
			}
			i = next - 1
		case '(', '[':
			depth++
		case ')', ']':
			if depth == 0 {
				return i
			}
			depth--
		case ',':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	digits := false
	for i, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits = true
		case c == '-' || c == '+':
			if i != 0 {
				return false
			}
		case c == '.' || c == 'e' || c == 'E':
		default:
			return false
		}
	}
	return digits
}

// quoteLiteral returns s as a standard SQL string literal. pg_dump output
// sets standard_conforming_strings on, so backslashes need no escaping.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// maskTuple masks one INSERT tuple and appends its SQL text to b.
func maskTuple(b *strings.Builder, tbl *rules.Table, tuple []sqlValue, row []rules.Field) error {
	if len(tuple) != len(tbl.Columns()) {
		return fmt.Errorf("%w: tuple has %d values, want %d", ErrFormat, len(tuple), len(tbl.Columns()))
	}
	for i, v := range tuple {
		row[i] = rules.Field{Text: v.text, Null: v.null}
	}
	if err := tbl.MaskRow(row); err != nil {
		return err
	}
	b.WriteByte('(')
	for i, v := range tuple {
		if i > 0 {
			b.WriteString(", ")
		}
		f := row[i]
		switch {
		case f.Null == v.null && f.Text == v.text:
			b.WriteString(v.raw)
		case !v.literal:
			return fmt.Errorf("column %s: %w", tbl.Columns()[i], errOpaque)
		case f.Null:
			b.WriteString("NULL")
		default:
			b.WriteString(quoteLiteral(f.Text))
			b.WriteString(v.cast)
		}
	}
	b.WriteByte(')')
	return nil
}
