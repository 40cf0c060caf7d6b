package pgproxy

import (
	"errors"
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// The proxy parses statements as PostgreSQL does with its defaults:
// standard_conforming_strings on and a client encoding in which every byte
// below 0x80 is the ASCII character. If the server lexed a text otherwise,
// a quote or backslash would end a string in one parser and not in the
// other, and a value could leave the server unmasked. The client encoding
// must moreover be UTF8: transformers work on bytes, so the same value in
// another encoding would get another pseudonym, and a mask character
// would reach the client in an encoding it did not ask for. So the proxy
// rejects statements that change these settings and ends a session in
// which the server reports that they changed anyway.

// errLexSettings ends a session after the server reported a setting with
// which it lexes statements differently from the proxy.
var errLexSettings = errors.New("upstream lexing settings changed")

// utf8Encoding reports whether name is PostgreSQL's UTF8 encoding under
// one of its names. PostgreSQL compares encoding names lowercased and with
// everything but letters and digits removed.
func utf8Encoding(name string) bool {
	var b strings.Builder
	for _, c := range strings.ToLower(name) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
	}
	return b.String() == "utf8" || b.String() == "unicode"
}

// lexSettingChange returns a description of a SET statement that would
// make the server lex statements differently from the proxy, or "".
func lexSettingChange(set *pg_query.VariableSetStmt) string {
	name := strings.ToLower(set.Name)
	switch name {
	case "standard_conforming_strings", "backslash_quote":
		return "SET or RESET " + name
	case "client_encoding":
		// RESET and DEFAULT return to the encoding the client started
		// with, which the proxy checked at startup.
		for _, a := range set.Args {
			c := a.GetAConst()
			if c == nil || c.GetSval() == nil || !utf8Encoding(c.GetSval().GetSval()) {
				return "SET client_encoding to an encoding other than UTF8"
			}
		}
	}
	return ""
}

// checkLexStatus returns an error when the server reports a setting with
// which it would lex statements differently from the proxy.
func checkLexStatus(name, value string) error {
	switch strings.ToLower(name) {
	case "standard_conforming_strings":
		if !strings.EqualFold(value, "on") {
			return fmt.Errorf("the database reports standard_conforming_strings=%s, which ward pgproxy does not support", value)
		}
	case "client_encoding":
		if !utf8Encoding(value) {
			return fmt.Errorf("the database reports client_encoding=%s, and ward pgproxy supports UTF8 only", value)
		}
	}
	return nil
}
