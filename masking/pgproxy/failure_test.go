package pgproxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestUnknownLineageRedacted(t *testing.T) {
	f := startProxy(t, "")
	emails := direct(t, f.pg, "SELECT email FROM customer")
	out, err := f.psql(t, "tester", testerPW, "SELECT email_of(1)")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if strings.TrimSpace(out) != "REDACTED" {
		t.Errorf("email_of(1) = %q, want REDACTED", out)
	}
	assertNoEmail(t, "email_of", out, emails)

	// The support role may see e-mails, but not through a function whose
	// body the proxy cannot trace.
	out, err = f.psql(t, "support", supportPW, "SELECT email_of(1)")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	assertNoEmail(t, "email_of as support", out, emails)
}

func TestUnknownLineageRejected(t *testing.T) {
	f := startProxy(t, "unknown_lineage: reject\n")
	emails := direct(t, f.pg, "SELECT email FROM customer")
	out, err := f.psql(t, "tester", testerPW, "SELECT email_of(1)")
	if err == nil {
		t.Errorf("psql email_of(1) succeeded with %q, want it rejected", out)
	}
	if !strings.Contains(out, "cannot be established") {
		t.Errorf("psql output = %q, want the lineage error", out)
	}
	assertNoEmail(t, "rejected", out, emails)

	// Traced statements still work.
	if out, err := f.psql(t, "tester", testerPW, "SELECT lower(email) FROM customer LIMIT 1"); err != nil {
		t.Errorf("traced statement: %v\n%s", err, out)
	}

	// With pgx the rejection arrives as an error and the connection stays usable.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, "SELECT email_of($1)", 1).Scan(&s); err == nil {
		t.Errorf("pgx email_of = %q, want an error", s)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT customer_id FROM customer WHERE customer_id = $1", 3).Scan(&n); err != nil || n != 3 {
		t.Errorf("query after rejection = %d, %v; want 3", n, err)
	}
}

func TestLoginOnlyAtProxy(t *testing.T) {
	f := startProxy(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	dsn := "postgres://tester:" + testerPW + "@127.0.0.1:" + portOf(f.pg.DSN("chinook")) + "/chinook?sslmode=disable"
	if c, err := pgconn.Connect(ctx, dsn); err == nil {
		c.Close(ctx)
		t.Error("tester login worked directly at PostgreSQL, want it to fail")
	}
	if c, err := pgconn.Connect(ctx, f.proxyDSN("tester", "wrong")); err == nil {
		c.Close(ctx)
		t.Error("wrong password accepted by the proxy")
	}
	if c, err := pgconn.Connect(ctx, f.proxyDSN("nobody", testerPW)); err == nil {
		c.Close(ctx)
		t.Error("unknown user accepted by the proxy")
	}

	conn, err := pgconn.Connect(ctx, f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var seen []string
	for _, k := range []string{"session_authorization", "application_name", "server_version"} {
		seen = append(seen, conn.ParameterStatus(k))
	}
	res := conn.ExecParams(ctx, "SELECT current_user, current_setting('application_name')", nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	for _, v := range res.Rows[0] {
		seen = append(seen, string(v))
	}
	out, _ := f.psql(t, "tester", testerPW, "SELECT * FROM no_such_table; SELECT 1/0")
	seen = append(seen, out)
	out, _ = f.psql(t, "tester", "wrong", "SELECT 1")
	seen = append(seen, out)

	cmdline, _ := os.ReadFile("/proc/self/cmdline")
	environ, _ := os.ReadFile("/proc/self/environ")
	for what, text := range map[string]string{
		"client messages": strings.Join(seen, "|"), "proxy log": f.logs.String(),
		"process args": string(cmdline), "process environment": string(environ),
	} {
		if strings.Contains(text, f.password) {
			t.Errorf("%s contain the upstream password", what)
		}
	}
	if !strings.Contains(f.logs.String(), "authentication failed") {
		t.Errorf("proxy log has no failed login entry")
	}
}

func portOf(dsn string) string {
	at := strings.LastIndex(dsn, ":")
	slash := strings.Index(dsn[at:], "/")
	return dsn[at+1 : at+slash]
}

// startupPacket returns a protocol 3.0 startup message for user.
func startupPacket(user string) []byte {
	body := binary.BigEndian.AppendUint32(nil, 196608)
	for _, kv := range []string{"user", user, "database", "chinook"} {
		body = append(append(body, kv...), 0)
	}
	body = append(body, 0)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
}

func TestOversizeMessageClosed(t *testing.T) {
	f := startProxy(t, "limits: {max_message_bytes: 4096}\n")
	ctx := context.Background()
	conn, err := pgconn.Connect(ctx, f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	res := conn.ExecParams(ctx, "SELECT $1::text", [][]byte{[]byte(strings.Repeat("x", 10000))}, nil, nil, nil).Read()
	var pgErr *pgconn.PgError
	if !errors.As(res.Err, &pgErr) || pgErr.Code != "54000" {
		t.Errorf("oversize Bind: err = %v, want SQLSTATE 54000", res.Err)
	}
	assertServing(t, f)
}

func TestCutConnectionsHarmless(t *testing.T) {
	f := startProxy(t, "")
	cases := map[string][]byte{
		"half startup":     startupPacket("tester")[:7],
		"huge startup":     {0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0},
		"garbage":          []byte("GET / HTTP/1.1\r\n\r\n"),
		"startup then cut": startupPacket("tester"),
	}
	for name, data := range cases {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(data); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c.Close()
	}

	// A logged-in client that disappears in the middle of a message.
	ctx := context.Background()
	conn, err := pgconn.Connect(ctx, f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatal(err)
	}
	raw := conn.Conn()
	_, _ = raw.Write([]byte{'Q', 0, 0, 1, 0, 'S', 'E', 'L'})
	raw.Close()

	assertServing(t, f)
}

func TestUpstreamStopped(t *testing.T) {
	f := startProxy(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	f.pg.Stop(t)
	restarted := false
	defer func() {
		if !restarted {
			f.pg.Start(t)
		}
	}()

	res := conn.ExecParams(ctx, "SELECT 1", nil, nil, nil, nil).Read()
	if res.Err == nil {
		t.Error("query with upstream stopped succeeded")
	}
	_, err = pgconn.Connect(ctx, f.proxyDSN("tester", testerPW))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "08006" {
		t.Errorf("connect with upstream stopped: err = %v, want SQLSTATE 08006", err)
	}

	f.pg.Start(t)
	restarted = true
	assertServing(t, f)
	if strings.Contains(f.logs.String(), f.password) {
		t.Error("proxy log contains the upstream password after connect failures")
	}
	if !strings.Contains(f.logs.String(), "upstream connect failed") {
		t.Error("proxy log has no entry for the failed upstream connect")
	}
}

// assertServing checks that the proxy still serves a new client.
func assertServing(t *testing.T, f *fixture) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatalf("proxy stopped serving: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM genre").Scan(&n); err != nil || n == 0 {
		t.Errorf("count(*) after failures = %d, %v", n, err)
	}
}

func TestPgbenchScript(t *testing.T) {
	f := startProxy(t, "")
	script := filepath.Join(t.TempDir(), "masked.sql")
	if err := os.WriteFile(script, []byte("\\set id random(1, 59)\nSELECT email, phone, total FROM customer JOIN invoice USING (customer_id) WHERE customer_id = :id;\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(f.addr)
	for _, mode := range []string{"simple", "extended", "prepared"} {
		cmd := exec.Command(filepath.Join(f.pg.BinDir(), "pgbench"), "-n", "-f", script, "-M", mode,
			"-c", "2", "-t", "50", "-h", host, "-p", port, "-U", "tester", "chinook")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+testerPW, "PGSSLMODE=disable")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("pgbench -M %s: %v\n%s", mode, err, out)
			continue
		}
		if !strings.Contains(string(out), "number of transactions actually processed: 100/100") {
			t.Errorf("pgbench -M %s did not process 100 transactions:\n%s", mode, out)
		}
	}
}

func TestSyntaxErrorNotForwarded(t *testing.T) {
	f := startProxy(t, "")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		_, err := conn.Exec(ctx, "SELEC email FROM customer", mode)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42601" {
			t.Errorf("mode %v: syntax error: err = %v, want SQLSTATE 42601", mode, err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM genre", mode).Scan(&n); err != nil || n == 0 {
			t.Errorf("mode %v: query after syntax error = %d, %v", mode, n, err)
		}
	}
}

func TestGSSEncDeclined(t *testing.T) {
	f := startProxy(t, "")
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{0, 0, 0, 8, 4, 210, 22, 48}); err != nil {
		t.Fatal(err)
	}
	answer := make([]byte, 1)
	if _, err := io.ReadFull(c, answer); err != nil || answer[0] != 'N' {
		t.Errorf("GSSENCRequest answer = %q, %v; want N", answer, err)
	}
}

func TestRaisedValuesScrubbed(t *testing.T) {
	f := startProxy(t, "writes: passthrough\n")
	emails := direct(t, f.pg, "SELECT email FROM customer")
	for _, level := range []string{"NOTICE", "WARNING", "EXCEPTION"} {
		out, _ := f.psql(t, "tester", testerPW, `\set VERBOSITY verbose
DO $$ BEGIN RAISE `+level+` '%', (SELECT email FROM customer WHERE customer_id = 1) USING ERRCODE = '42P01'; END $$`)
		assertNoEmail(t, "RAISE "+level, out, emails)
	}
}

func TestProtocol32Negotiated(t *testing.T) {
	f := startProxy(t, "")
	ctx := context.Background()
	cfg, err := pgconn.ParseConfig(f.proxyDSN("tester", testerPW) + "&max_protocol_version=3.2&min_protocol_version=3.0")
	if err != nil {
		t.Skipf("pgconn has no protocol version settings: %v", err)
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect asking for protocol 3.2: %v", err)
	}
	defer conn.Close(ctx)
	res := conn.ExecParams(ctx, "SELECT email FROM customer WHERE customer_id = 1", nil, nil, nil, nil).Read()
	if res.Err != nil || len(res.Rows) != 1 {
		t.Fatalf("query over negotiated protocol: %v", res.Err)
	}
	emails := direct(t, f.pg, "SELECT email FROM customer")
	assertNoEmail(t, "protocol 3.2", string(res.Rows[0][0]), emails)

	// Cancel keys stay 4 bytes under 3.0, so a cancel still reaches upstream.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if res := conn.ExecParams(cctx, "SELECT pg_sleep(20)", nil, nil, nil, nil).Read(); res.Err == nil {
		t.Error("pg_sleep(20) finished, want it canceled")
	}
}
