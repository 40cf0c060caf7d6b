package pgproxy_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// hangupApp is the application_name of the sessions these tests end,
// which the proxy passes upstream.
const hangupApp = "ward-hangup-test"

// upstreamSessions counts the upstream connections of those sessions.
func upstreamSessions(t *testing.T, f *fixture) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND application_name = $2", upstreamRole, hangupApp).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitUpstreamSessions waits until the proxy has want upstream connections.
func waitUpstreamSessions(t *testing.T, f *fixture, want int, when string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := upstreamSessions(t, f)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the proxy still has %d upstream connections, want %d", when, n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hijack logs in as tester through the proxy and returns the raw socket.
func hijack(t *testing.T, f *fixture) net.Conn {
	t.Helper()
	cfg, err := pgconn.ParseConfig(f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = hangupApp
	pc, err := pgconn.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	return h.Conn
}

// TestClientHangupMidMessage sends part of a message and closes the
// connection, with a FIN or a reset: the proxy must end the session and
// its upstream connection.
func TestClientHangupMidMessage(t *testing.T) {
	f := startProxy(t, "")
	msg, err := (&pgproto3.Query{String: "select 1"}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		bytes int
		reset bool
	}{
		{"header, FIN", 3, false},
		{"header, reset", 3, true},
		{"body, FIN", len(msg) - 3, false},
		{"body, reset", len(msg) - 3, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := hijack(t, f)
			waitUpstreamSessions(t, f, 1, "after the login")
			if _, err := conn.Write(msg[:c.bytes]); err != nil {
				t.Fatal(err)
			}
			if tc, ok := conn.(*net.TCPConn); ok && c.reset {
				tc.SetLinger(0)
			}
			conn.Close()
			waitUpstreamSessions(t, f, 0, "after the client hung up mid-message")
		})
	}
}

// TestEndSessionsWhileClientNeverReads ends the sessions of a client that
// pipelines queries without reading their results, so the proxy is blocked
// writing both to it and upstream. EndSessions must return at once, close
// the session, and leave the proxy open to new logins.
func TestEndSessionsWhileClientNeverReads(t *testing.T) {
	f := startProxy(t, "")
	conn := hijack(t, f)
	defer conn.Close()
	waitUpstreamSessions(t, f, 1, "after the login")
	msg, err := (&pgproto3.Query{String: "select repeat('x', 2000) from generate_series(1, 20)"}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
		for range 20000 {
			if _, err := conn.Write(msg); err != nil {
				return
			}
		}
	}()
	time.Sleep(time.Second)

	ended := make(chan int, 1)
	go func() { ended <- f.srv.EndSessions("tester", "") }()
	select {
	case n := <-ended:
		if n != 1 {
			t.Errorf("EndSessions = %d, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("EndSessions blocked for 5 s")
	}
	waitUpstreamSessions(t, f, 0, "after EndSessions")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	other, err := pgx.Connect(ctx, f.proxyDSN("support", supportPW))
	if err != nil {
		t.Fatalf("login after EndSessions: %v", err)
	}
	other.Close(ctx)
}

// TestUpstreamTerminatedClosesClient ends the upstream backend of an idle
// session: the client must get the FATAL error and then a closed
// connection, not a socket left open.
func TestUpstreamTerminatedClosesClient(t *testing.T) {
	f := startProxy(t, "")
	conn := hijack(t, f)
	defer conn.Close()
	waitUpstreamSessions(t, f, 1, "after the login")

	ctx := context.Background()
	admin, err := pgx.Connect(ctx, f.pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", hangupApp); err != nil {
		t.Fatal(err)
	}

	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the client connection was still open 10 s after its upstream backend ended")
		}
		return
	}
}

// TestPipelineWithoutReadingIsBounded pipelines more queries than the proxy
// tracks without reading any result: the session must end with 54000
// instead of growing without bound.
func TestPipelineWithoutReadingIsBounded(t *testing.T) {
	f := startProxy(t, "")
	conn := hijack(t, f)
	defer conn.Close()
	var batch []byte
	for range 1000 {
		var err error
		if batch, err = (&pgproto3.Bind{}).Encode(batch); err != nil {
			t.Fatal(err)
		}
		if batch, err = (&pgproto3.Execute{}).Encode(batch); err != nil {
			t.Fatal(err)
		}
	}
	parse, err := (&pgproto3.Parse{Query: "SELECT 1"}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(parse); err != nil {
		t.Fatal(err)
	}
	for range 200 {
		if _, err := conn.Write(batch); err != nil {
			break // the proxy ended the session
		}
	}
	waitUpstreamSessions(t, f, 0, "after a pipeline of 400,000 unread messages")
}
