package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func openTestStore(tb testing.TB) (*Store, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "ward.db")
	s, err := Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s, path
}

func testLease(id string) Lease {
	now := time.Now()
	return Lease{ID: id, Kind: "x509", Object: "x509/a", Subject: "a", IssuedAt: now, ExpiresAt: now.Add(time.Hour), MaxExpiresAt: now.Add(time.Hour)}
}

// request returns an insert request as InsertLease queues it.
func request(id string) insertRequest {
	return insertRequest{lease: testLease(id), meta: "{}", err: make(chan error, 1)}
}

func leaseExists(t *testing.T, s *Store, id string) bool {
	t.Helper()
	_, err := s.GetLease(context.Background(), id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func TestCommitDuplicateFailsAlone(t *testing.T) {
	s, _ := openTestStore(t)
	if err := s.InsertLease(context.Background(), testLease("x509/a/dup")); err != nil {
		t.Fatal(err)
	}

	batch := []insertRequest{request("x509/a/1"), request("x509/a/dup"), request("x509/a/2"), request("x509/a/dup")}
	s.commit(batch)

	for i, want := range []bool{true, false, true, false} {
		err := <-batch[i].err
		if got := err == nil; got != want {
			t.Errorf("commit: insert %d (%s) error = %v, want success %v", i, batch[i].lease.ID, err, want)
		}
		if err != nil && !isConstraint(err) {
			t.Errorf("commit: insert %d error = %v, want a constraint violation", i, err)
		}
	}
	for _, id := range []string{"x509/a/1", "x509/a/2"} {
		if !leaseExists(t, s, id) {
			t.Errorf("lease %s missing after its batch committed", id)
		}
	}
}

func TestCommitFailureFailsWholeBatch(t *testing.T) {
	s, _ := openTestStore(t)
	// A deferred foreign key is checked at COMMIT, so inserting a lease
	// named boom makes the commit of its whole transaction fail.
	if _, err := s.db.Exec(`
		CREATE TABLE parent (id TEXT PRIMARY KEY);
		CREATE TABLE child (parent_id TEXT REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);
		CREATE TRIGGER boom AFTER INSERT ON leases WHEN NEW.id = 'x509/a/boom'
		BEGIN INSERT INTO child VALUES ('missing'); END;`); err != nil {
		t.Fatal(err)
	}

	batch := []insertRequest{request("x509/a/1"), request("x509/a/boom"), request("x509/a/2")}
	s.commit(batch)

	for i, req := range batch {
		if err := <-req.err; err == nil {
			t.Errorf("commit: insert %d (%s) error = nil, want the failed commit", i, req.lease.ID)
		}
		if leaseExists(t, s, req.lease.ID) {
			t.Errorf("lease %s stored although its commit failed", req.lease.ID)
		}
	}
}

func TestInsertLeaseWaitsForCommit(t *testing.T) {
	s, path := openTestStore(t)

	// A second connection holds SQLite's write lock, so the group commit
	// cannot commit until it lets go.
	other, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := context.Background()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { done <- s.InsertLease(ctx, testLease("x509/a/waiting")) }()
	select {
	case err := <-done:
		t.Fatalf("InsertLease returned %v while another connection held the write lock", err)
	case <-time.After(100 * time.Millisecond):
	}

	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("InsertLease after the lock was released = %v, want nil", err)
	}
	var n int
	if err := other.QueryRow(`SELECT count(*) FROM leases WHERE id = 'x509/a/waiting'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("rows visible to another connection after InsertLease = %d, %v, want 1", n, err)
	}
}

func TestConcurrentInsertsWithDuplicates(t *testing.T) {
	s, path := openTestStore(t)
	ctx := context.Background()
	const n = 200
	var (
		wg     sync.WaitGroup
		failed atomic.Int32
	)
	// Every tenth id is sent twice: exactly one of each pair may succeed,
	// and every other insert must not be failed by the duplicates.
	for i := range n {
		ids := []string{fmt.Sprintf("x509/a/%03d", i)}
		if i%10 == 0 {
			ids = append(ids, ids[0])
		}
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.InsertLease(ctx, testLease(id)); err != nil {
					if !isConstraint(err) {
						t.Errorf("InsertLease(%s) = %v, want nil or a constraint violation", id, err)
					}
					failed.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	if got := failed.Load(); got != n/10 {
		t.Errorf("failed inserts = %d, want %d (one per duplicate)", got, n/10)
	}
	s.Close()

	reopened, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	leases, err := reopened.ListLeases(ctx, LeaseFilter{Prefix: "x509/a/", Limit: 1000})
	if err != nil || len(leases) != n {
		t.Fatalf("ListLeases after reopen = %d, %v, want %d", len(leases), err, n)
	}
}

// BenchmarkInsertLease measures 32 concurrent writers through the group
// commit, next to the same inserts each committed in its own transaction.
func BenchmarkInsertLease(b *testing.B) {
	const writers = 32
	run := func(b *testing.B, insert func(s *Store, l Lease) error) {
		s, _ := openTestStore(b)
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
					if err := insert(s, testLease(fmt.Sprintf("x509/a/%d", i))); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "leases/s")
	}

	b.Run("group", func(b *testing.B) {
		run(b, func(s *Store, l Lease) error { return s.InsertLease(context.Background(), l) })
	})
	b.Run("single", func(b *testing.B) {
		run(b, func(s *Store, l Lease) error {
			_, err := s.db.Exec(insertLeaseSQL, l.ID, l.Kind, l.Object, l.Subject, l.Serial,
				unixMilli(l.IssuedAt), unixMilli(l.ExpiresAt), unixMilli(l.MaxExpiresAt), l.Renewable, StateActive, "{}")
			return err
		})
	})
}

// warmUp queues n inserts at once, so that the arrival rate is high.
func warmUp(t *testing.T, s *Store, prefix string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.InsertLease(context.Background(), testLease(fmt.Sprintf("%s/%d", prefix, i))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestCommitWindowLoneInsertNotHeld(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "ward.db"), WithCommitWindow(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	for i := range 3 {
		start := time.Now()
		if err := s.InsertLease(context.Background(), testLease(fmt.Sprintf("x509/a/%d", i))); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 30*time.Second {
			t.Errorf("InsertLease %d alone took %v, want no wait for the one-minute window", i, took)
		}
	}
}

func TestCommitWindowGathersSpacedInserts(t *testing.T) {
	const window = 500 * time.Millisecond
	s, err := Open(filepath.Join(t.TempDir(), "ward.db"), WithCommitWindow(window))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	warmUp(t, s, "x509/warm", 64)

	// Ten inserts queued 2 ms apart: each would commit alone, since a
	// commit takes well under 2 ms, unless the window gathers them.
	before := s.commits.Load()
	start := time.Now()
	ticker := time.NewTicker(2 * time.Millisecond)
	defer ticker.Stop()
	var wg sync.WaitGroup
	for i := range 10 {
		<-ticker.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.InsertLease(context.Background(), testLease(fmt.Sprintf("x509/spaced/%d", i))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()

	if got := s.commits.Load() - before; got > 3 {
		t.Errorf("commits for 10 inserts 2 ms apart = %d, want at most 3 with a %v window", got, window)
	}
	if took := time.Since(start); took > 10*window {
		t.Errorf("10 inserts took %v, want about one %v window", took, window)
	}
}

func TestCommitWindowCloseCommitsHeldInserts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ward.db")
	s, err := Open(path, WithCommitWindow(time.Minute))
	if err != nil {
		t.Fatal(err)
	}

	// After about twenty inserts of a burst the committer starts to hold
	// inserts back for up to a minute; Close must commit them at once.
	const n = 64
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- s.InsertLease(context.Background(), testLease(fmt.Sprintf("x509/a/%d", i))) }()
	}
	for s.commits.Load() == 0 || len(s.inserts) > 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("Close took %v, want it not to wait for the one-minute window", took)
	}

	acknowledged := 0
	for range n {
		err := <-errs
		switch {
		case err == nil:
			acknowledged++
		case !errors.Is(err, ErrClosed):
			t.Errorf("InsertLease during Close = %v, want nil or ErrClosed", err)
		}
	}
	reopened, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	leases, err := reopened.ListLeases(context.Background(), LeaseFilter{Prefix: "x509/a/", Limit: 1000})
	if err != nil || len(leases) != acknowledged {
		t.Errorf("leases after reopen = %d, %v, want the %d acknowledged", len(leases), err, acknowledged)
	}
}

func TestArrivalRate(t *testing.T) {
	const maxGap = 16 * time.Millisecond
	tests := []struct {
		name     string
		interval time.Duration
		n        int
		below    bool // whether the mean ends below 1 ms
	}{
		{"first insert", 0, 1, false},
		{"sparse", 50 * time.Millisecond, 100, false},
		{"every 2 ms", 2 * time.Millisecond, 100, false},
		{"every 100 µs", 100 * time.Microsecond, 100, true},
		{"burst at one instant", 0, 100, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a arrivalRate
			at := time.Unix(1000, 0)
			for range tt.n {
				a.observe(at, maxGap)
				at = at.Add(tt.interval)
			}
			if got := a.meanGap < time.Millisecond; got != tt.below {
				t.Errorf("meanGap after %d inserts %v apart = %v, want below 1ms %v", tt.n, tt.interval, a.meanGap, tt.below)
			}
		})
	}
}
