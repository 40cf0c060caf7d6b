// Package store keeps ward's durable state — leases and join tokens — in an
// embedded SQLite database (the pure-Go modernc.org/sqlite driver), so that
// `ward serve --dev` needs no database server.
//
// Durability contract: a lease insert returns only after the transaction that
// contains it has committed with synchronous=FULL in WAL mode, so a lease that
// was acknowledged survives a crash of the process or the machine. Concurrent
// inserts are grouped into one transaction (group commit) to share the cost
// of each fsync. While inserts arrive often, an insert may wait up to a
// commit window (WithCommitWindow) for others to join its transaction. An
// insert that violates a constraint fails alone, and a failed commit fails
// every insert of its transaction. Join tokens are stored only as SHA-256
// digests.
//
// A Store is safe for concurrent use.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Sentinel errors that callers branch on.
var (
	ErrNotFound = errors.New("store: not found")
	// ErrTokenInvalid means a join token is unknown, expired or already used.
	// The three cases are not distinguished, so a caller learns nothing about
	// which tokens exist.
	ErrTokenInvalid = errors.New("store: join token invalid, expired or already used")
	ErrClosed       = errors.New("store: closed")
)

const schema = `
CREATE TABLE IF NOT EXISTS leases (
	id             TEXT PRIMARY KEY,
	kind           TEXT NOT NULL,
	object         TEXT NOT NULL,
	subject        TEXT NOT NULL,
	serial         TEXT NOT NULL DEFAULT '',
	issued_at      INTEGER NOT NULL,
	expires_at     INTEGER NOT NULL,
	max_expires_at INTEGER NOT NULL,
	renewable      INTEGER NOT NULL DEFAULT 0,
	state          TEXT NOT NULL,
	ended_at       INTEGER NOT NULL DEFAULT 0,
	meta           TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS leases_state_expiry ON leases(state, expires_at);
CREATE INDEX IF NOT EXISTS leases_serial ON leases(serial) WHERE serial != '';
CREATE TABLE IF NOT EXISTS join_tokens (
	digest     BLOB PRIMARY KEY,
	spiffe_id  TEXT NOT NULL,
	created_by TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	used_at    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS proxy_logins (
	username   TEXT PRIMARY KEY,
	spiffe_id  TEXT NOT NULL,
	verifier   TEXT NOT NULL,
	expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS mesh_services (
	name TEXT PRIMARY KEY,
	spec TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
	spiffe_id  TEXT PRIMARY KEY,
	reason     TEXT NOT NULL,
	created_by TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
`

// Store is the SQLite-backed state of one ward server.
type Store struct {
	db          *sql.DB
	insertLease *sql.Stmt // the group commit's lease insert
	inserts     chan insertRequest
	done        chan struct{}
	stopped     chan struct{}
	closeOnce   sync.Once
	closeErr    error

	window  time.Duration // see WithCommitWindow
	arrival arrivalRate   // owned by the group commit goroutine
	commits atomic.Int64  // transactions committed by the group commit
}

// Option configures a Store.
type Option func(*Store)

// Open opens or creates the database file at path and starts the group-commit
// writer. Close stops it.
func Open(path string, opts ...Option) (*Store, error) {
	// The database holds lease records and token digests: readable by its
	// owner only. SQLite gives its -wal and -shm files the same mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	f.Close()

	dsn := "file:" + url.PathEscape(path) + "?" + url.Values{"_pragma": {
		"journal_mode(WAL)",
		"synchronous(FULL)",
		"busy_timeout(10000)",
		"foreign_keys(1)",
	}}.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}

	// SQLite allows one writer at a time; readers in WAL mode run beside it.
	db.SetMaxOpenConns(8)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: create schema in %s: %w", path, err)
	}

	insert, err := prepareInsert(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{
		db:          db,
		insertLease: insert,
		inserts:     make(chan insertRequest, 1024),
		done:        make(chan struct{}),
		stopped:     make(chan struct{}),
		window:      DefaultCommitWindow,
	}
	for _, opt := range opts {
		opt(s)
	}
	go s.groupCommit()
	return s, nil
}

// Close stops the writer, after the inserts already queued, and closes the
// database. Calls after the first return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		<-s.stopped
		s.closeErr = errors.Join(s.insertLease.Close(), s.db.Close())
	})
	return s.closeErr
}

// Ping checks that the database responds to a query.
func (s *Store) Ping(ctx context.Context) error {
	return s.db.PingContext(ctx)
}

func unixMilli(t time.Time) int64 { return t.UnixMilli() }

func fromMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
