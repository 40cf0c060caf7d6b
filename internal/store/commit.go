package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	sqlite "modernc.org/sqlite"
)

// insertLeaseSQL is prepared once per connection and reused by every batch.
const insertLeaseSQL = `INSERT INTO leases
	(id, kind, object, subject, serial, issued_at, expires_at, max_expires_at, renewable, state, meta)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

type insertRequest struct {
	lease  Lease
	meta   string
	queued time.Time
	err    chan error
}

// maxBatch bounds how many inserts one transaction carries.
const maxBatch = 256

// maxGapWindows caps, in commit windows, the interval between two inserts
// that the arrival rate counts.
const maxGapWindows = 16

// DefaultCommitWindow is the commit window of a Store opened without
// WithCommitWindow.
const DefaultCommitWindow = time.Millisecond

// WithCommitWindow sets how long the group commit may hold an insert back
// to gather others into its transaction, counted from when the insert was
// queued. It holds inserts back only while the mean interval between recent
// inserts is shorter than the window, so inserts that arrive seldom are
// committed at once. Zero turns the wait off: a transaction then carries
// only the inserts that queued up during the previous commit.
//
// Each commit ends in an fsync, which takes longer than the inserts it
// makes durable. Without the wait, a steady stream of inserts mostly
// commits one lease per transaction, so holding each insert back for up to
// one window saves most of the fsyncs and the thread switches around them.
func WithCommitWindow(d time.Duration) Option {
	return func(s *Store) { s.window = max(d, 0) }
}

// InsertLease stores a new lease and returns once it is durable.
func (s *Store) InsertLease(ctx context.Context, l Lease) error {
	meta, err := json.Marshal(l.Meta)
	if err != nil {
		return fmt.Errorf("store: encode lease meta: %w", err)
	}
	req := insertRequest{lease: l, meta: string(meta), queued: time.Now(), err: make(chan error, 1)}

	select {
	case s.inserts <- req:
	case <-s.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}

	// Once queued, the insert is committed or failed by the writer. Waiting
	// for that result even after ctx ends keeps the caller from returning a
	// credential whose lease state it does not know.
	return <-req.err
}

// groupCommit drains the insert queue. Each transaction carries whatever
// queued up while the previous one was being written, and, while inserts
// arrive often, those that arrive within the commit window of the first.
func (s *Store) groupCommit() {
	defer close(s.stopped)
	batch := make([]insertRequest, 0, maxBatch)
	window := time.NewTimer(time.Hour)
	window.Stop()
	for {
		batch = batch[:0]
		select {
		case req := <-s.inserts:
			batch = s.add(batch, req)
		case <-s.done:
			s.drain()
			return
		}

	queued:
		for len(batch) < maxBatch {
			select {
			case req := <-s.inserts:
				batch = s.add(batch, req)
			default:
				break queued
			}
		}

		if s.window > 0 && len(batch) < maxBatch && s.arrival.meanGap < s.window {
			window.Reset(time.Until(batch[0].queued.Add(s.window)))
		gather:
			for len(batch) < maxBatch {
				select {
				case req := <-s.inserts:
					batch = s.add(batch, req)
				case <-window.C:
					break gather
				case <-s.done:
					break gather
				}
			}
			window.Stop()
		}
		s.commit(batch)
	}
}

// add appends req to batch and records its arrival.
func (s *Store) add(batch []insertRequest, req insertRequest) []insertRequest {
	s.arrival.observe(req.queued, maxGapWindows*s.window)
	return append(batch, req)
}

// drain commits the inserts still queued at Close.
func (s *Store) drain() {
	for {
		select {
		case req := <-s.inserts:
			s.commit([]insertRequest{req})
		default:
			return
		}
	}
}

// commit writes batch in one transaction and sends each request its result.
// An insert that violates a constraint (a lease id that already exists)
// fails alone: the transaction is rolled back and written again without it.
// Any other failure, and a failed COMMIT, fails every request of the batch,
// because none of its leases can then be known to be durable.
func (s *Store) commit(batch []insertRequest) {
	for len(batch) > 0 {
		failed, err := s.insertBatch(batch)
		if failed < 0 || !isConstraint(err) {
			for _, req := range batch {
				req.err <- err
			}
			return
		}
		batch[failed].err <- err
		batch = append(batch[:failed:failed], batch[failed+1:]...)
	}
}

// insertBatch inserts batch in one transaction and commits it. When the
// insert of one lease fails, it rolls back and returns that lease's index
// with the error; otherwise the index is -1.
func (s *Store) insertBatch(batch []insertRequest) (failed int, err error) {
	tx, err := s.db.Begin()
	if err != nil {
		return -1, fmt.Errorf("store: begin lease insert: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	stmt := tx.Stmt(s.insertLease)
	for i, req := range batch {
		l := req.lease
		if _, err := stmt.Exec(l.ID, l.Kind, l.Object, l.Subject, l.Serial,
			unixMilli(l.IssuedAt), unixMilli(l.ExpiresAt), unixMilli(l.MaxExpiresAt),
			l.Renewable, StateActive, req.meta); err != nil {
			return i, fmt.Errorf("store: insert lease %s: %w", l.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return -1, fmt.Errorf("store: commit of %d leases failed, none stored: %w", len(batch), err)
	}
	s.commits.Add(1)
	return -1, nil
}

// isConstraint reports whether err is SQLite's SQLITE_CONSTRAINT (result
// code 19, in the low byte of every extended constraint code).
func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == 19
}

// prepareInsert prepares the lease insert that every batch reuses.
func prepareInsert(db *sql.DB) (*sql.Stmt, error) {
	stmt, err := db.Prepare(insertLeaseSQL)
	if err != nil {
		return nil, fmt.Errorf("store: prepare lease insert: %w", err)
	}
	return stmt, nil
}

// arrivalRate tracks the mean interval between inserts as an exponentially
// weighted moving average, each new interval weighing 1/8. Intervals count
// at most maxGap, so that the mean falls below a commit window within about
// twenty inserts once a burst begins, even after a long idle spell. It
// starts at maxGap, so the first inserts are not held back.
type arrivalRate struct {
	last    time.Time
	meanGap time.Duration
}

// observe records an insert queued at t; maxGap caps the interval it adds.
func (a *arrivalRate) observe(t time.Time, maxGap time.Duration) {
	if a.last.IsZero() {
		a.last, a.meanGap = t, maxGap
		return
	}
	// Inserts queued by concurrent callers can be taken slightly out of
	// order; such an interval counts as zero.
	gap := min(max(t.Sub(a.last), 0), maxGap)
	a.meanGap += (gap - a.meanGap) / 8
	if t.After(a.last) {
		a.last = t
	}
}
