package pgproxy

import (
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Error and notice scrubbing. PostgreSQL quotes row values in several
// fields: a unique violation's DETAIL is "Key (email)=(a@b.c) already
// exists.", a check violation's is "Failing row contains (...)", a data
// exception's MESSAGE quotes the input that failed to convert, and WHERE
// and internal queries show PL/pgSQL context. The proxy cannot tell which
// of these values came from a masked column, so it removes values from
// every error and notice it relays, and keeps names and codes.
var (
	keyValueRe   = regexp.MustCompile(`(Key \([^)]*\))=\(.*?\)( already exists| is not present| is still referenced| conflicts with|\.|$)`)
	failingRowRe = regexp.MustCompile(`(Failing row contains) \(.*\)`)
)

const redactedDetail = "(detail removed by ward)"

// scrubError removes values from an ErrorResponse or NoticeResponse.
func scrubError(e *pgproto3.ErrorResponse) {
	class := ""
	if len(e.Code) >= 2 {
		class = e.Code[:2]
	}

	// RAISE may set any SQLSTATE, so a raised error is recognized by the
	// server routine that reported it.
	if e.Routine == "exec_stmt_raise" || e.File == "pl_exec.c" {
		class = "P0"
	}

	// Inside a function (WHERE is set) a message can quote text the
	// function built from data, as with dynamic SQL naming a value, so
	// only the part before the first quote or colon is kept.
	inFunction := e.Where != ""

	switch class {
	case "P0":
		// RAISE builds its message from anything the function read.
		e.Message = "a function raised an error; its message was removed by ward"
		e.Detail = ""
	case "22", "XX", "38", "39", "2F":
		// Data exceptions quote the value that failed to convert.
		e.Message = messagePrefix(e.Message)
	case "00", "01":
		// RAISE NOTICE and warnings from functions carry arbitrary text.
		if e.Code == "00000" || e.Code == "01000" {
			e.Message = "message removed by ward"
		} else if inFunction {
			e.Message = messagePrefix(e.Message)
		}
	default:
		if inFunction {
			e.Message = messagePrefix(e.Message)
		}
	}

	if e.Detail != "" {
		d := keyValueRe.ReplaceAllString(e.Detail, "$1=("+redactedText+")$2")
		d = failingRowRe.ReplaceAllString(d, "$1 ("+redactedText+")")
		if d == e.Detail && class != "42" && class != "08" && class != "53" && class != "57" {
			d = redactedDetail
		}
		e.Detail = d
	}
	if class != "42" {
		e.Hint = ""
	}
	e.Where = ""
	e.InternalQuery = ""
	e.InternalPosition = 0
	e.UnknownFields = nil
}

// messagePrefix keeps the text before the first ": " or quote, which names
// the kind of failure, and drops the rest.
func messagePrefix(msg string) string {
	cut := len(msg)
	if i := strings.Index(msg, ": "); i >= 0 {
		cut = i
	}
	if i := strings.IndexAny(msg, `"'`); i >= 0 && i < cut {
		cut = i
	}
	prefix := strings.TrimSpace(msg[:cut])
	if prefix == "" {
		return "value removed by ward"
	}
	return prefix + ": value removed by ward"
}

func scrubNotice(n *pgproto3.NoticeResponse) {
	e := (*pgproto3.ErrorResponse)(n)
	scrubError(e)
}
