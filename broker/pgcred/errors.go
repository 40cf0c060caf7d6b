package pgcred

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Errors that callers branch on.
var (
	// ErrUnavailable marks a failure to reach the database. The request may
	// succeed later without any change on ward's side, so the API returns
	// 503 with Retry-After. Errors that wrap it are *UnavailableError.
	ErrUnavailable = errors.New("database unavailable")

	// ErrGone means the login role of a lease no longer exists. Revoke
	// treats it as success, and Renew returns it so the lease can be
	// marked revoked.
	ErrGone = errors.New("database login no longer exists")

	// ErrUnknownRole means no configured role has the requested name.
	ErrUnknownRole = errors.New("unknown database role")

	// ErrBeyondMaxTTL means a requested expiry lies past the role's
	// max_ttl counted from issuance. Issue rejects such a request. Renew
	// extends to the max_ttl and returns a *ShortRenewalError.
	ErrBeyondMaxTTL = errors.New("expiry beyond the role's max_ttl")

	// ErrTemplate means a creation or revocation template produced SQL
	// that failed or a login that breaks ward's rules.
	ErrTemplate = errors.New("database role template failed")
)

// ShortRenewalError reports that a renewal stopped at the role's max_ttl,
// earlier than requested. It matches ErrBeyondMaxTTL.
type ShortRenewalError struct {
	Username string
	Granted  time.Time
}

func (e *ShortRenewalError) Error() string {
	return fmt.Sprintf("pgcred: login %s renewed only until %s, its max_ttl", e.Username, e.Granted.UTC().Format(time.RFC3339))
}

// Unwrap returns ErrBeyondMaxTTL.
func (e *ShortRenewalError) Unwrap() error { return ErrBeyondMaxTTL }

// defaultRetryAfter is the Retry-After hint for an unreachable database.
const defaultRetryAfter = 5 * time.Second

// UnavailableError reports that the database behind Backend could not be
// reached. It matches ErrUnavailable with errors.Is.
type UnavailableError struct {
	Backend string // "postgres <host>:<port>/<database>", never a password
	Err     error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%s unavailable: %v", e.Backend, e.Err)
}

// Unwrap returns ErrUnavailable and the cause.
func (e *UnavailableError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// BackendName returns the backend named in the error, for a 503 response.
func (e *UnavailableError) BackendName() string { return e.Backend }

// RetryAfter returns how long a client should wait before trying again.
func (e *UnavailableError) RetryAfter() time.Duration { return defaultRetryAfter }

// unavailableStates are SQLSTATEs that mean the server cannot serve now
// but may later: class 08 (connection exception) is matched by prefix.
var unavailableStates = map[string]bool{
	"53300": true, // too_many_connections
	"57P01": true, // admin_shutdown
	"57P02": true, // crash_shutdown
	"57P03": true, // cannot_connect_now
	"58030": true, // io_error
}

// isUnavailable reports whether err means the database could not be
// reached, as opposed to a rejected statement.
func isUnavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || unavailableStates[pgErr.Code]
	}

	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr):
		return true
	case pgconn.Timeout(err), errors.Is(err, context.DeadlineExceeded):
		return true
	}

	// A connection that the server closed mid-request surfaces as EOF or
	// "conn closed" without a type to match.
	msg := err.Error()
	return strings.Contains(msg, "conn closed") ||
		strings.Contains(msg, "unexpected EOF") ||
		strings.Contains(msg, "connection reset")
}

// wrapUnavailable returns an *UnavailableError for connection failures and
// err unchanged otherwise.
func wrapUnavailable(backend string, err error) error {
	if err == nil || !isUnavailable(err) {
		return err
	}
	return &UnavailableError{Backend: backend, Err: err}
}

// sqlState returns the SQLSTATE of a server error, or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
