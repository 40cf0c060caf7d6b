package pgproxy_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestLexSettingsGuarded checks that a client cannot make the server lex
// statements differently from the proxy: standard_conforming_strings and
// client-only encodings are rejected by SET and at startup, and a session
// whose upstream reports them is rejected.
func TestLexSettingsGuarded(t *testing.T) {
	f := startProxy(t, "")
	for _, q := range []string{
		"SET standard_conforming_strings = off",
		"SET SESSION standard_conforming_strings TO on",
		"RESET standard_conforming_strings",
		"SET backslash_quote = on",
		"SET NAMES 'SJIS'",
		"SET client_encoding = 'Shift-JIS'",
		"SET client_encoding TO big5",
		"SET LOCAL client_encoding = 'gb18030'",
		"SET client_encoding = 'LATIN1'",
		"SET NAMES 'WIN1252'",
	} {
		out, err := f.psql(t, "tester", testerPW, q)
		if err == nil || !strings.Contains(out, "does not allow") {
			t.Errorf("psql %q: err %v, output %q; want it rejected", q, err, out)
		}
	}
	for _, q := range []string{"SET client_encoding = 'unicode'", "SET NAMES 'UTF8'", "RESET client_encoding"} {
		if out, err := f.psql(t, "tester", testerPW, q); err != nil {
			t.Errorf("psql %q = %v, %s; want it allowed", q, err, out)
		}
	}

	ctx := context.Background()
	for _, enc := range []string{"SJIS", "LATIN1"} {
		conn, err := pgx.Connect(ctx, f.proxyDSN("tester", testerPW)+"&client_encoding="+enc)
		if err == nil {
			conn.Close(ctx)
			t.Errorf("connect with client_encoding=%s succeeded, want it rejected", enc)
		} else if !strings.Contains(err.Error(), "client_encoding") {
			t.Errorf("connect with client_encoding=%s: %v, want an error naming client_encoding", enc, err)
		}
	}

	// A role default reaches the session without any statement. The proxy
	// reads it from the server's parameter status and rejects the session.
	direct(t, f.pg, "ALTER ROLE "+upstreamRole+" SET standard_conforming_strings = off")
	t.Cleanup(func() { direct(t, f.pg, "ALTER ROLE "+upstreamRole+" RESET standard_conforming_strings") })
	out, err := f.psql(t, "tester", testerPW, "SELECT 1")
	if err == nil || !strings.Contains(out, "standard_conforming_strings") {
		t.Errorf("session with standard_conforming_strings off upstream: err %v, output %q; want it rejected", err, out)
	}
}

// TestClientEncodingAlwaysUTF8 gives the upstream role a LATIN1 default.
// A client that names no encoding must still get UTF8 through the proxy,
// so that masked values do not depend on the encoding.
func TestClientEncodingAlwaysUTF8(t *testing.T) {
	f := startProxy(t, "")
	direct(t, f.pg, "ALTER ROLE "+upstreamRole+" SET client_encoding = 'LATIN1'")
	t.Cleanup(func() { direct(t, f.pg, "ALTER ROLE "+upstreamRole+" RESET client_encoding") })
	out, err := f.psql(t, "tester", testerPW, "SHOW client_encoding")
	if err != nil || !strings.Contains(out, "UTF8") {
		t.Errorf("SHOW client_encoding through the proxy: err %v, output %q; want UTF8", err, out)
	}
}
