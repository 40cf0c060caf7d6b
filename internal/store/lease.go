package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Lease states.
const (
	StateActive  = "active"
	StateRevoked = "revoked"
	StateExpired = "expired"
)

// Lease is the durable record of one issued credential.
type Lease struct {
	ID           string            `json:"id"`
	Kind         string            `json:"kind"`    // x509, jwt, db, vault
	Object       string            `json:"object"`  // the policy object, e.g. x509/spiffe://ward.test/ns/shop/sa/web
	Subject      string            `json:"subject"` // the SPIFFE ID the credential was issued to
	Serial       string            `json:"serial,omitempty"`
	IssuedAt     time.Time         `json:"issued_at"`
	ExpiresAt    time.Time         `json:"expires_at"`
	MaxExpiresAt time.Time         `json:"max_expires_at"`
	Renewable    bool              `json:"renewable"`
	State        string            `json:"state"`
	EndedAt      time.Time         `json:"ended_at,omitzero"`
	Meta         map[string]string `json:"meta,omitempty"` // non-secret backend data such as a role name
}

const leaseColumns = `id, kind, object, subject, serial, issued_at, expires_at, max_expires_at, renewable, state, ended_at, meta`

type scanner interface{ Scan(dest ...any) error }

func scanLease(row scanner) (Lease, error) {
	var (
		l                                  Lease
		issued, expires, maxExpires, ended int64
		meta                               string
	)
	err := row.Scan(&l.ID, &l.Kind, &l.Object, &l.Subject, &l.Serial,
		&issued, &expires, &maxExpires, &l.Renewable, &l.State, &ended, &meta)
	if err != nil {
		return Lease{}, err
	}
	l.IssuedAt, l.ExpiresAt, l.MaxExpiresAt, l.EndedAt = fromMilli(issued), fromMilli(expires), fromMilli(maxExpires), fromMilli(ended)
	if meta != "" && meta != "{}" && meta != "null" {
		if err := json.Unmarshal([]byte(meta), &l.Meta); err != nil {
			return Lease{}, fmt.Errorf("store: decode meta of lease %s: %w", l.ID, err)
		}
	}
	return l, nil
}

// GetLease returns one lease, or ErrNotFound.
func (s *Store) GetLease(ctx context.Context, id string) (Lease, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+leaseColumns+` FROM leases WHERE id = ?`, id)
	l, err := scanLease(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Lease{}, ErrNotFound
	}
	if err != nil {
		return Lease{}, fmt.Errorf("store: get lease: %w", err)
	}
	return l, nil
}

// LeaseFilter selects leases for ListLeases. Empty fields match everything.
type LeaseFilter struct {
	Prefix  string // lease id prefix
	Subject string
	State   string
	Limit   int // at most this many, newest first; 0 means 1000
}

// ListLeases returns the leases that match f, newest first.
func (s *Store) ListLeases(ctx context.Context, f LeaseFilter) ([]Lease, error) {
	var (
		where []string
		args  []any
	)
	if f.Prefix != "" {
		where = append(where, `substr(id, 1, ?) = ?`)
		args = append(args, len(f.Prefix), f.Prefix)
	}
	if f.Subject != "" {
		where = append(where, `subject = ?`)
		args = append(args, f.Subject)
	}
	if f.State != "" {
		where = append(where, `state = ?`)
		args = append(args, f.State)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}

	query := `SELECT ` + leaseColumns + ` FROM leases`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY issued_at DESC, id LIMIT ?`
	args = append(args, limit)
	return s.queryLeases(ctx, query, args...)
}

func (s *Store) queryLeases(ctx context.Context, query string, args ...any) ([]Lease, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list leases: %w", err)
	}
	defer rows.Close()

	var leases []Lease
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list leases: %w", err)
		}
		leases = append(leases, l)
	}
	return leases, rows.Err()
}

// DueLeases returns up to limit active leases whose expiry is at or before now.
func (s *Store) DueLeases(ctx context.Context, now time.Time, limit int) ([]Lease, error) {
	return s.queryLeases(ctx, `SELECT `+leaseColumns+` FROM leases
		WHERE state = ? AND expires_at <= ? ORDER BY expires_at LIMIT ?`,
		StateActive, unixMilli(now), limit)
}

// ExtendLease sets a new expiry on an active lease. It returns ErrNotFound
// when no active lease has that id.
func (s *Store) ExtendLease(ctx context.Context, id string, expiresAt time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE leases SET expires_at = ? WHERE id = ? AND state = ?`,
		unixMilli(expiresAt), id, StateActive)
	if err != nil {
		return fmt.Errorf("store: extend lease: %w", err)
	}
	return requireOneRow(res)
}

// EndLease moves an active lease to state (revoked or expired). It returns
// ErrNotFound when no active lease has that id.
func (s *Store) EndLease(ctx context.Context, id, state string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE leases SET state = ?, ended_at = ? WHERE id = ? AND state = ?`,
		state, unixMilli(at), id, StateActive)
	if err != nil {
		return fmt.Errorf("store: end lease: %w", err)
	}
	return requireOneRow(res)
}

// RevokedSerials returns the serials of revoked leases whose certificates
// have not yet expired: the content of the CRL.
func (s *Store) RevokedSerials(ctx context.Context, now time.Time) (map[string]time.Time, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT serial, ended_at FROM leases
		WHERE state = ? AND serial != '' AND max_expires_at > ?`, StateRevoked, unixMilli(now))
	if err != nil {
		return nil, fmt.Errorf("store: revoked serials: %w", err)
	}
	defer rows.Close()

	serials := make(map[string]time.Time)
	for rows.Next() {
		var (
			serial string
			ended  int64
		)
		if err := rows.Scan(&serial, &ended); err != nil {
			return nil, fmt.Errorf("store: revoked serials: %w", err)
		}
		serials[serial] = fromMilli(ended)
	}
	return serials, rows.Err()
}

// CountLeases returns the number of leases in each state.
func (s *Store) CountLeases(ctx context.Context) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT state, count(*) FROM leases GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("store: count leases: %w", err)
	}
	defer rows.Close()

	counts := map[string]int{StateActive: 0, StateRevoked: 0, StateExpired: 0}
	for rows.Next() {
		var (
			state string
			n     int
		)
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("store: count leases: %w", err)
		}
		counts[state] = n
	}
	return counts, rows.Err()
}

func requireOneRow(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}
