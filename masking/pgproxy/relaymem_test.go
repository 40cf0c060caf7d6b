package pgproxy_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// heapBytes returns the live heap after a collection.
func heapBytes() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// TestLargeMaskedRowNotKept relays one 3 MB masked value in each of ten
// sessions, which then stay idle. A session must not keep buffers as
// large as the largest row it relayed.
func TestLargeMaskedRowNotKept(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The rules mask person.phone with partial, which keeps the length.
	// The table exists before the proxy starts, so the proxy's catalog
	// has it.
	pg, _ := chinookServer(t)
	admin, err := pgconn.Connect(ctx, pg.DSN("chinook"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `CREATE TABLE person (id int, email text, phone text, name text);
INSERT INTO person (id, phone) VALUES (1, repeat('5', 3000000));
GRANT SELECT ON person TO `+upstreamRole).ReadAll(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct(t, pg, "DROP TABLE person") })
	f := startProxy(t, "")

	const sessions = 10
	before := heapBytes()
	var conns []*pgconn.PgConn
	for range sessions {
		pc, err := pgconn.Connect(ctx, f.proxyDSN("tester", testerPW))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, pc)
		res, err := pc.Exec(ctx, "SELECT phone FROM person; SELECT 1").ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if got := string(res[0].Rows[0][0]); len(got) != 3000000 || got[:3] != "***" {
			t.Fatalf("masked phone has %d bytes starting %q, want 3000000 starting ***", len(got), got[:min(3, len(got))])
		}
	}
	perSession := (heapBytes() - before) / sessions
	for _, pc := range conns {
		pc.Close(ctx)
	}
	if perSession > 1<<20 {
		t.Errorf("each idle session keeps %d KiB after relaying a 3 MB masked row, want under 1024", perSession>>10)
	}
}

// TestRowsNotHeldBehindPartialMessage reads a result whose third row
// waits on an advisory lock. PostgreSQL has sent the first row and part of
// the second by then, and the proxy must relay the complete row rather
// than wait for the rest of the partial one.
func TestRowsNotHeldBehindPartialMessage(t *testing.T) {
	f := startProxy(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	locker, err := pgconn.Connect(ctx, f.pg.DSN("chinook"))
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	if _, err := locker.Exec(ctx, "SELECT pg_advisory_lock(7201)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	unlocked := false
	unlock := func() {
		if !unlocked {
			unlocked = true
			_, _ = locker.Exec(ctx, "SELECT pg_advisory_unlock(7201)").ReadAll()
		}
	}
	defer unlock()

	pc, err := pgconn.Connect(ctx, f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	first := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		rr := pc.ExecParams(ctx, `SELECT g, CASE WHEN g = 3 THEN pg_advisory_lock(7201)::text END, repeat('x', 5000)
FROM generate_series(1, 3) g`, nil, nil, nil, nil)
		if !rr.NextRow() {
			_, err := rr.Close()
			first <- err
			return
		}
		first <- nil
		for rr.NextRow() {
		}
		_, err := rr.Close()
		done <- err
	}()

	// The deadline only bounds a failing run: the row arrives in
	// milliseconds when the proxy relays it.
	select {
	case err := <-first:
		if err != nil {
			t.Fatalf("first row: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("the first row did not arrive while the third waited on a lock")
	}
	unlock()
	if err := <-done; err != nil {
		t.Errorf("rest of the result: %v", err)
	}
}
