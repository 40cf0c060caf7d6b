package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// JoinToken is the stored form of a join token: never the token itself.
type JoinToken struct {
	SPIFFEID  string
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// TokenDigest returns the SHA-256 digest under which a token is stored.
// Join tokens carry 256 bits of randomness, so an unsalted digest does not
// help anyone who reads the database to find them.
func TokenDigest(token []byte) []byte {
	sum := sha256.Sum256(token)
	return sum[:]
}

// InsertJoinToken stores the digest of a new join token.
func (s *Store) InsertJoinToken(ctx context.Context, digest []byte, t JoinToken) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO join_tokens (digest, spiffe_id, created_by, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?)`, digest, t.SPIFFEID, t.CreatedBy, unixMilli(t.CreatedAt), unixMilli(t.ExpiresAt))
	if err != nil {
		return fmt.Errorf("store: insert join token: %w", err)
	}
	return nil
}

// ConsumeJoinToken marks the token with this digest used and returns it.
// A single UPDATE decides, so of two concurrent uses exactly one succeeds.
func (s *Store) ConsumeJoinToken(ctx context.Context, digest []byte, now time.Time) (JoinToken, error) {
	var (
		t                JoinToken
		created, expires int64
	)
	err := s.db.QueryRowContext(ctx, `UPDATE join_tokens SET used_at = ?
		WHERE digest = ? AND used_at = 0 AND expires_at > ?
		RETURNING spiffe_id, created_by, created_at, expires_at`,
		unixMilli(now), digest, unixMilli(now)).Scan(&t.SPIFFEID, &t.CreatedBy, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return JoinToken{}, ErrTokenInvalid
	}
	if err != nil {
		return JoinToken{}, fmt.Errorf("store: consume join token: %w", err)
	}
	t.CreatedAt, t.ExpiresAt = fromMilli(created), fromMilli(expires)
	return t, nil
}

// PeekJoinToken returns the valid, unused token with this digest without
// using it.
func (s *Store) PeekJoinToken(ctx context.Context, digest []byte, now time.Time) (JoinToken, error) {
	var (
		t                JoinToken
		created, expires int64
	)
	err := s.db.QueryRowContext(ctx, `SELECT spiffe_id, created_by, created_at, expires_at FROM join_tokens
		WHERE digest = ? AND used_at = 0 AND expires_at > ?`, digest, unixMilli(now)).
		Scan(&t.SPIFFEID, &t.CreatedBy, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return JoinToken{}, ErrTokenInvalid
	}
	if err != nil {
		return JoinToken{}, fmt.Errorf("store: look up join token: %w", err)
	}
	t.CreatedAt, t.ExpiresAt = fromMilli(created), fromMilli(expires)
	return t, nil
}

// DeleteJoinTokens removes the unused join tokens bound to spiffeID, as when
// the identity is quarantined, and returns how many it removed.
func (s *Store) DeleteJoinTokens(ctx context.Context, spiffeID string) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM join_tokens WHERE spiffe_id = ? AND used_at = 0`, spiffeID)
	if err != nil {
		return 0, fmt.Errorf("store: delete join tokens: %w", err)
	}
	return res.RowsAffected()
}
