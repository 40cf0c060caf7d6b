package pgproxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestExtendedCopyInWithoutSync runs COPY FROM STDIN through the extended
// protocol and waits for CopyInResponse before it sends Sync, as the
// protocol allows: PostgreSQL sends that response at once. The proxy must
// not hold the client's Parse, Bind and Execute for a Sync that the client
// sends only after the copy.
func TestExtendedCopyInWithoutSync(t *testing.T) {
	f := startProxy(t, "writes: passthrough\nddl: allow\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn := f.connect(t, "tester", testerPW)
	pc := conn.PgConn()
	if _, err := pc.Exec(ctx, "CREATE TEMP TABLE notes (body text)").ReadAll(); err != nil {
		t.Fatal(err)
	}

	fe := pc.Frontend()
	fe.Send(&pgproto3.Parse{Query: "COPY notes FROM STDIN"})
	fe.Send(&pgproto3.Bind{})
	fe.Send(&pgproto3.Execute{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := pc.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("waiting for CopyInResponse before Sync: %v", err)
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			t.Fatalf("COPY FROM STDIN: %s", e.Message)
		}
		if _, ok := msg.(*pgproto3.CopyInResponse); ok {
			break
		}
	}

	fe.Send(&pgproto3.CopyData{Data: []byte("hello\n")})
	fe.Send(&pgproto3.CopyDone{})
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	tag := ""
	for {
		msg, err := pc.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			t.Fatalf("COPY data: %s", m.Message)
		case *pgproto3.CommandComplete:
			tag = string(m.CommandTag)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if tag != "COPY 1" {
		t.Errorf("command tag of the copy = %q, want COPY 1", tag)
	}
}

// TestRejectedExecuteAnswersFlush sends Parse, Bind and an Execute the
// proxy rejects, then Flush without Sync: as from PostgreSQL, the client
// must get ParseComplete, BindComplete and the error without a Sync.
func TestRejectedExecuteAnswersFlush(t *testing.T) {
	f := startProxy(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pc := f.connect(t, "tester", testerPW).PgConn()
	fe := pc.Frontend()
	fe.Send(&pgproto3.Parse{Query: "COPY (SELECT email FROM customer LIMIT 2) TO STDOUT"})
	fe.Send(&pgproto3.Bind{})
	fe.Send(&pgproto3.Execute{})
	fe.Send(&pgproto3.Flush{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}

	var got []string
	for len(got) < 3 {
		msg, err := pc.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		switch msg.(type) {
		case *pgproto3.ParseComplete:
			got = append(got, "ParseComplete")
		case *pgproto3.BindComplete:
			got = append(got, "BindComplete")
		case *pgproto3.ErrorResponse:
			got = append(got, "ErrorResponse")
		}
	}
	if want := "ParseComplete BindComplete ErrorResponse"; strings.Join(got, " ") != want {
		t.Errorf("responses before Sync = %v, want %s", got, want)
	}
}
