package pgproxy

// fastKeyPrefix begins every key of appendFastKey. Statement texts cannot
// contain a NUL byte (the protocol ends them with one), and the keys of
// literalFreeKey begin "\x00literal-free\x00", so no key of one kind
// equals a key of another.
const fastKeyPrefix = "\x00fast-literal-free\x00"

// appendFastKey appends to dst the statement-cache key of sql and reports
// whether it could. It is a pure-Go fast path for literalFreeKey: it
// accepts only a small, exactly understood subset of PostgreSQL's lexical
// syntax and reports false for anything else, after which the caller uses
// literalFreeKey. For text it accepts, the key after fastKeyPrefix equals
// literalFreeKey's key after its prefix, which that function builds from
// pg_query.Scan's tokens: each token's text followed by a space, with
// numeric and string constants written as "?". Texts with one fast key
// therefore share one literalFreeKey key and one analysis.
//
// It accepts a single statement that begins with SELECT, VALUES, TABLE or
// WITH and has at most one ";", at the end. Its tokens may be plain ASCII
// identifiers and keywords, double-quoted identifiers, unsigned integer
// and decimal constants, standard string constants without backslashes,
// parameters such as $1, the punctuation ( ) [ ] , . ::, and the
// operators in fastOperators. It rejects comments, dollar quoting,
// prefixed strings (E'x', B'1', X'1f', N'x', U&'x'), adjacent string
// constants, constants glued to identifiers (1e5, 1abc, 0x1f, 1_000),
// non-ASCII bytes and control characters.
func appendFastKey(dst []byte, sql string) ([]byte, bool) {
	dst = append(dst, fastKeyPrefix...)
	first := true
	i := 0
	for {
		for i < len(sql) && isSQLSpace(sql[i]) {
			i++
		}
		if i == len(sql) {
			return dst, !first
		}
		c := sql[i]
		start := i
		literal := false
		switch {
		case c == ';':
			for i++; i < len(sql) && isSQLSpace(sql[i]); i++ {
			}
			return dst, !first && i == len(sql)
		case isIdentStart(c):
			for i++; i < len(sql) && isIdentByte(sql[i]); i++ {
			}
			if i < len(sql) && (sql[i] == '\'' || sql[i] == '"' || sql[i] == '&') {
				// E'..', U&'..', U&"..", or a name glued to a quote.
				return nil, false
			}
			if first && !leadsCachedStatement(sql[start:i]) {
				return nil, false
			}
		case isDigit(c):
			for i++; i < len(sql) && isDigit(sql[i]); i++ {
			}
			if i < len(sql) && sql[i] == '.' {
				if i+1 >= len(sql) || !isDigit(sql[i+1]) {
					return nil, false
				}
				for i++; i < len(sql) && isDigit(sql[i]); i++ {
				}
			}
			if i < len(sql) && (isIdentByte(sql[i]) || sql[i] == '.') {
				return nil, false
			}
			literal = true
		case c == '\'':
			end, ok := scanQuoted(sql, i, '\'')
			if !ok {
				return nil, false
			}
			i = end
			// PostgreSQL joins string constants separated by a newline, so
			// a following constant is left to the full scanner.
			j := i
			for j < len(sql) && isSQLSpace(sql[j]) {
				j++
			}
			if j < len(sql) && sql[j] == '\'' {
				return nil, false
			}
			literal = true
		case c == '"':
			end, ok := scanQuoted(sql, i, '"')
			if !ok || end-i < 3 {
				return nil, false
			}
			i = end
			if i < len(sql) && (isIdentByte(sql[i]) || sql[i] == '"' || sql[i] == '\'') {
				return nil, false
			}
		case c == '$':
			for i++; i < len(sql) && isDigit(sql[i]); i++ {
			}
			if i == start+1 || i < len(sql) && (isIdentByte(sql[i]) || sql[i] == '.') {
				return nil, false
			}
		case c == ':':
			if i+1 >= len(sql) || sql[i+1] != ':' || i+2 < len(sql) && isOperatorByte(sql[i+2]) || i+2 < len(sql) && sql[i+2] == ':' {
				return nil, false
			}
			i += 2
		case c == '.':
			if i+1 < len(sql) && (isDigit(sql[i+1]) || sql[i+1] == '.') {
				return nil, false
			}
			i++
		case c == '(' || c == ')' || c == '[' || c == ']' || c == ',':
			i++
		case isOperatorByte(c):
			for i++; i < len(sql) && isOperatorByte(sql[i]); i++ {
			}
			if !fastOperators[sql[start:i]] {
				return nil, false
			}
		default:
			return nil, false
		}
		if first && c != ';' && !isIdentStart(c) {
			return nil, false
		}
		first = false
		if literal {
			dst = append(dst, '?', ' ')
		} else {
			dst = append(append(dst, sql[start:i]...), ' ')
		}
	}
}

// fastOperators are the operators appendFastKey accepts, each exactly as
// PostgreSQL's lexer splits it: none ends in "+" or "-" after another
// character (which the lexer may split off) or contains "--" or "/*".
var fastOperators = map[string]bool{
	"+": true, "-": true, "*": true, "/": true, "%": true, "^": true,
	"<": true, ">": true, "=": true, "<=": true, ">=": true, "<>": true, "!=": true,
	"||": true, "->": true, "->>": true, "#>": true, "#>>": true, "@>": true, "<@": true,
}

// scanQuoted returns the end of the quoted token that starts at sql[i],
// whose quote character q is doubled inside it. It reports false for an
// unterminated token and for backslashes, non-ASCII bytes and control
// characters other than white space, which the fast key leaves to
// pg_query.
func scanQuoted(sql string, i int, q byte) (int, bool) {
	for i++; i < len(sql); i++ {
		c := sql[i]
		switch {
		case c == q:
			if i+1 < len(sql) && sql[i+1] == q {
				i++
				continue
			}
			return i + 1, true
		case c == '\\' || c >= 0x7f || c < ' ' && !isSQLSpace(c):
			return 0, false
		}
	}
	return 0, false
}

// leadsCachedStatement reports whether word is a keyword that begins a
// statement literalFreeKey caches: SELECT, VALUES, TABLE or WITH.
func leadsCachedStatement(word string) bool {
	switch len(word) {
	case 4:
		return equalFoldASCII(word, "with")
	case 5:
		return equalFoldASCII(word, "table")
	case 6:
		return equalFoldASCII(word, "select") || equalFoldASCII(word, "values")
	}
	return false
}

func equalFoldASCII(s, lower string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// isSQLSpace reports the white space the fast key accepts: space, tab,
// newline, carriage return and form feed.
func isSQLSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isIdentStart(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_'
}

func isIdentByte(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '$' }

// isOperatorByte reports the characters PostgreSQL's lexer builds
// operators from.
func isOperatorByte(c byte) bool {
	switch c {
	case '+', '-', '*', '/', '<', '>', '=', '~', '!', '@', '#', '%', '^', '&', '|', '`', '?':
		return true
	}
	return false
}
