package pgproxy

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestScrubError(t *testing.T) {
	cases := []struct {
		name            string
		in              pgproto3.ErrorResponse
		message, detail string
	}{
		{"unique violation",
			pgproto3.ErrorResponse{Code: "23505", Message: `duplicate key value violates unique constraint "customer_email_key"`, Detail: "Key (email)=(luisg@embraer.com.br) already exists."},
			`duplicate key value violates unique constraint "customer_email_key"`, "Key (email)=(REDACTED) already exists."},
		{"foreign key",
			pgproto3.ErrorResponse{Code: "23503", Message: "insert or update violates foreign key", Detail: `Key (support_rep_id)=(99) is not present in table "employee".`},
			"insert or update violates foreign key", `Key (support_rep_id)=(REDACTED) is not present in table "employee".`},
		{"check violation",
			pgproto3.ErrorResponse{Code: "23514", Message: "new row violates check constraint", Detail: "Failing row contains (1, Luís, a@b.c)."},
			"new row violates check constraint", "Failing row contains (REDACTED)."},
		{"cast",
			pgproto3.ErrorResponse{Code: "22P02", Message: `invalid input syntax for type integer: "luisg@embraer.com.br"`},
			"invalid input syntax for type integer: value removed by ward", ""},
		{"raise",
			pgproto3.ErrorResponse{Code: "P0001", Message: "customer luisg@embraer.com.br is blocked", Detail: "phone +55 12"},
			"a function raised an error; its message was removed by ward", ""},
		{"undefined table keeps names",
			pgproto3.ErrorResponse{Code: "42P01", Message: `relation "nowhere" does not exist`, Hint: "check the name"},
			`relation "nowhere" does not exist`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := c.in
			e.InternalQuery = "SELECT email FROM customer"
			scrubError(&e)
			if e.Message != c.message {
				t.Errorf("Message = %q, want %q", e.Message, c.message)
			}
			if e.Detail != c.detail {
				t.Errorf("Detail = %q, want %q", e.Detail, c.detail)
			}
			if e.InternalQuery != "" {
				t.Errorf("InternalQuery = %q, want it empty", e.InternalQuery)
			}
		})
	}
}

func TestScrubErrorRaiseKeepsNoValue(t *testing.T) {
	cases := []pgproto3.ErrorResponse{
		{Code: "P0001", Message: "luisg@embraer.com.br"},
		{Code: "23505", Message: "luisg@embraer.com.br", Detail: "luisg@embraer.com.br", Routine: "exec_stmt_raise"},
		{Code: "42P01", Message: "luisg@embraer.com.br", File: "pl_exec.c"},
	}
	for _, e := range cases {
		scrubError(&e)
		if strings.Contains(e.Message+e.Detail, "@") {
			t.Errorf("scrubError(code %s) left %q / %q, want the raised text removed", e.Code, e.Message, e.Detail)
		}
	}
}

func TestCopyEscapes(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"plain", "abc", "abc"},
		{"tab and newline", `a\tb\nc`, "a\tb\nc"},
		{"backslash", `a\\b`, `a\b`},
		{"octal", `\101\0`, "A\x00"},
		{"hex", `\x41\x4a`, "AJ"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := unescapeCopy([]byte(c.in))
			if !ok || string(got) != c.want {
				t.Errorf("unescapeCopy(%q) = %q, %v; want %q", c.in, got, ok, c.want)
			}
			if back, _ := unescapeCopy([]byte(escapeCopy([]byte(c.want), '\t'))); string(back) != c.want {
				t.Errorf("unescapeCopy(escapeCopy(%q)) = %q", c.want, back)
			}
		})
	}
	if _, ok := unescapeCopy([]byte(`abc\`)); ok {
		t.Error(`unescapeCopy("abc\\") succeeded, want a malformed field`)
	}
}

func TestMaskCopyRow(t *testing.T) {
	plan := &resultPlan{masks: true, cols: []columnAction{{kind: actionKeep}, {kind: actionRedact, oid: 25}, {kind: actionRedact, oid: 23}}}
	text := copyFormat{delimiter: '\t'}
	csv := copyFormat{csv: true, delimiter: ','}
	cases := []struct {
		name   string
		format copyFormat
		in     string
		want   string
		ok     bool
	}{
		{"text", text, "1\ta@b.c\t7\n", "1\tREDACTED\t\\N\n", true},
		{"text null kept", text, "1\t\\N\t\\N\n", "1\t\\N\t\\N\n", true},
		{"text pipe", copyFormat{delimiter: '|'}, "a\\|b|x|7\n", "a\\|b|REDACTED|\\N\n", true},
		{"text too few fields", text, "1\ta@b.c\n", "", false},
		{"text no newline", text, "1\ta@b.c\t7", "", false},
		{"csv", csv, "1,a@b.c,7\n", "1,REDACTED,\n", true},
		{"csv quoted", csv, "\"x,\"\"y\"\"\",\"a@b.c\n2\",7\n", "\"x,\"\"y\"\"\",REDACTED,\n", true},
		{"csv null and empty", csv, "\"\",,\n", "\"\",,\n", true},
		{"csv unterminated quote", csv, "\"x,a,7\n", "", false},
		{"csv stray quote", csv, "x\"y,a,7\n", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := maskCopyRow(plan, nil, c.format, []byte(c.in))
			if ok != c.ok || string(got) != c.want {
				t.Errorf("maskCopyRow(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
			}
		})
	}
}

func TestScrubErrorInsideFunction(t *testing.T) {
	e := pgproto3.ErrorResponse{Code: "42703", Message: `column "luisg@embraer.com.br" does not exist`,
		Where: "PL/pgSQL function inline_code_block line 1 at EXECUTE"}
	scrubError(&e)
	if e.Message != "column: value removed by ward" {
		t.Errorf("Message = %q, want the quoted name removed", e.Message)
	}
	if e.Where != "" {
		t.Errorf("Where = %q, want it empty", e.Where)
	}
}
