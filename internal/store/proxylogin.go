package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ProxyLogin is a login that the PostgreSQL masking proxy accepts. Only the
// SCRAM verifier is stored, never the password.
type ProxyLogin struct {
	Username  string
	SPIFFEID  string
	Verifier  string // JSON of the SCRAM-SHA-256 verifier
	ExpiresAt time.Time
}

// PutProxyLogin stores a new proxy login.
func (s *Store) PutProxyLogin(ctx context.Context, l ProxyLogin) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO proxy_logins (username, spiffe_id, verifier, expires_at) VALUES (?, ?, ?, ?)`,
		l.Username, l.SPIFFEID, l.Verifier, unixMilli(l.ExpiresAt))
	if err != nil {
		return fmt.Errorf("store: put proxy login: %w", err)
	}
	return nil
}

// ProxyLogin returns a proxy login that has not expired at now, or ErrNotFound.
func (s *Store) ProxyLogin(ctx context.Context, username string, now time.Time) (ProxyLogin, error) {
	var (
		l       ProxyLogin
		expires int64
	)
	err := s.db.QueryRowContext(ctx, `SELECT username, spiffe_id, verifier, expires_at FROM proxy_logins
		WHERE username = ? AND expires_at > ?`, username, unixMilli(now)).Scan(&l.Username, &l.SPIFFEID, &l.Verifier, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return ProxyLogin{}, ErrNotFound
	}
	if err != nil {
		return ProxyLogin{}, fmt.Errorf("store: get proxy login: %w", err)
	}
	l.ExpiresAt = fromMilli(expires)
	return l, nil
}

// ExtendProxyLogin moves a login's expiry.
func (s *Store) ExtendProxyLogin(ctx context.Context, username string, expiresAt time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE proxy_logins SET expires_at = ? WHERE username = ?`, unixMilli(expiresAt), username)
	if err != nil {
		return fmt.Errorf("store: extend proxy login: %w", err)
	}
	return requireOneRow(res)
}

// DeleteProxyLogin removes a login; deleting one that is gone is not an error.
func (s *Store) DeleteProxyLogin(ctx context.Context, username string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM proxy_logins WHERE username = ?`, username); err != nil {
		return fmt.Errorf("store: delete proxy login: %w", err)
	}
	return nil
}
