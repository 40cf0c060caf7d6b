// Package pgcred issues dynamic PostgreSQL logins: each lease gets its own
// login role with a random password and VALID UNTIL at the lease's expiry.
//
// Issue runs the role's creation template in one transaction, then checks
// that the role can log in, is not a superuser and expires no later than
// the lease, and rolls back otherwise. The password reaches PostgreSQL only
// as a SCRAM-SHA-256 verifier (RFC 7677), so neither the server's logs nor
// pg_stat_activity can show it. Renew moves VALID UNTIL, never past the
// role's max_ttl. Revoke sets NOLOGIN, terminates the login's sessions,
// reassigns what it owns to the admin role and drops its remaining
// privileges in every database that records them, and drops the role. A
// login that no longer exists counts as revoked.
//
// Connection failures are returned as *UnavailableError, which matches
// ErrUnavailable. Nothing in this package logs a password, a verifier or
// the admin password, and no error contains one.
//
// Concurrent grants on one table make PostgreSQL fail with "tuple
// concurrently updated", so issuance and revocation take a transaction
// advisory lock per database.
//
// NOTE: only a superuser admin role is tested. A CREATEROLE admin also
// needs pg_signal_backend to terminate sessions, and on PostgreSQL 15 and
// older membership in each created role for REASSIGN OWNED.
package pgcred

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"ward.dev/ward/crypto/secret"
)

// Meta keys that Issue returns and Renew and Revoke read.
const (
	MetaRole         = "role"
	MetaUsername     = "username"
	MetaMaxExpiresAt = "max_expires_at" // RFC 3339
)

// Credential is an issued login. DSN has no password: the client adds
// Password to connect.
type Credential struct {
	Username string
	Password secret.Bytes
	DSN      string
}

// Issuer creates, renews and drops login roles for the configured roles.
// It is safe for concurrent use.
type Issuer struct {
	roles             map[string]*role
	pools             []*role // one role per connection pool
	log               *slog.Logger
	rand              io.Reader
	now               func() time.Time
	revokeConcurrency int
	passwords         *passwordSource
}

// New validates roles, reads their admin passwords and prepares one
// connection pool per admin DSN. It does not connect: an unreachable
// database fails the first request, not startup.
func New(roles []Role, opts Options) (*Issuer, error) {
	iss := &Issuer{
		roles: make(map[string]*role, len(roles)),
		log:   opts.Logger,
		rand:  opts.Rand,
		now:   opts.Now,
	}
	if iss.log == nil {
		iss.log = slog.New(slog.DiscardHandler)
	}
	if iss.rand == nil {
		iss.rand = rand.Reader
	}
	if iss.now == nil {
		iss.now = time.Now
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 4
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	iss.revokeConcurrency = opts.RevokeConcurrency
	if iss.revokeConcurrency <= 0 {
		iss.revokeConcurrency = int(opts.MaxConns)
	}
	iss.passwords = newPasswordSource(iss.rand, iss.log)

	type poolKey struct{ dsn, env, file string }
	pools := map[poolKey]*role{}
	prefixes := map[string]string{}
	for _, cfg := range roles {
		r, err := cfg.validate()
		if err != nil {
			iss.Close()
			return nil, fmt.Errorf("pgcred: %w", err)
		}
		if iss.roles[r.Name] != nil {
			iss.Close()
			return nil, fmt.Errorf("pgcred: role %q is configured twice", r.Name)
		}
		// Logins finds a role's logins by username prefix, so two roles
		// must not share one.
		prefix := usernamePrefix(r.Name)
		if other, ok := prefixes[prefix]; ok {
			iss.Close()
			return nil, fmt.Errorf("pgcred: roles %q and %q both make usernames %s..., rename one", other, r.Name, prefix)
		}
		prefixes[prefix] = r.Name

		key := poolKey{r.DSN, r.Password.Env, r.Password.File}
		if shared := pools[key]; shared != nil {
			r.pool, r.backend = shared.pool, shared.backend
		} else {
			r.pool, r.backend, err = newPool(r.Role, opts)
			if err != nil {
				iss.Close()
				return nil, fmt.Errorf("pgcred: role %q: %w", r.Name, err)
			}
			pools[key] = r
			iss.pools = append(iss.pools, r)
		}
		iss.roles[r.Name] = r
	}
	return iss, nil
}

// newPool builds a lazy pool for the admin connection of r.
func newPool(r Role, opts Options) (*pgxpool.Pool, string, error) {
	if dsnHasPassword(r.DSN) {
		return nil, "", errors.New("dsn contains a password, move it to password.env or password.file")
	}
	cfg, err := pgxpool.ParseConfig(r.DSN)
	if err != nil {
		return nil, "", fmt.Errorf("dsn is invalid: %w", err)
	}

	password, err := r.Password.Resolve()
	if err != nil {
		return nil, "", fmt.Errorf("admin password: %w", err)
	}
	pw := password.Reveal()
	cfg.ConnConfig.Password = string(pw)
	clear(pw)

	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	cfg.ConnConfig.RuntimeParams["application_name"] = "ward"
	cfg.MaxConns = opts.MaxConns
	cfg.MinConns = 0

	backend := fmt.Sprintf("postgres %s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, "", fmt.Errorf("creating pool for %s: %w", backend, err)
	}
	return pool, backend, nil
}

// dsnHasPassword reports whether a URL or keyword/value DSN sets a
// password.
func dsnHasPassword(dsn string) bool {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return true // fail closed: it may hold one
		}
		_, set := u.User.Password()
		return set || u.Query().Has("password")
	}
	for _, field := range strings.Fields(dsn) {
		if strings.HasPrefix(strings.TrimSpace(field), "password") {
			return true
		}
	}
	return false
}

// Close stops password precomputation and closes the connection pools.
func (iss *Issuer) Close() {
	iss.passwords.Close()
	for _, r := range iss.pools {
		r.pool.Close()
	}
}

// Ping checks that every configured database accepts the admin
// connection, for a health endpoint. It returns the first failure, an
// *UnavailableError when the database cannot be reached.
func (iss *Issuer) Ping(ctx context.Context) error {
	for _, r := range iss.pools {
		if err := r.pool.Ping(ctx); err != nil {
			return fmt.Errorf("pgcred: role %q: %w", r.Name, wrapUnavailable(r.backend, err))
		}
	}
	return nil
}

// TTLs returns the default and maximum TTL of a configured role.
func (iss *Issuer) TTLs(roleName string) (defaultTTL, maxTTL time.Duration, err error) {
	r, err := iss.role(roleName)
	if err != nil {
		return 0, 0, err
	}
	return r.DefaultTTL, r.MaxTTL, nil
}

func (iss *Issuer) role(name string) (*role, error) {
	r := iss.roles[name]
	if r == nil {
		return nil, fmt.Errorf("pgcred: role %q: %w", name, ErrUnknownRole)
	}
	return r, nil
}

// Issue creates a login for role that expires at expiresAt (the role's
// default_ttl from now when zero) and returns it with the lease metadata
// that Renew and Revoke need. subject is only logged: the lease record
// maps the username to its subject.
func (iss *Issuer) Issue(ctx context.Context, roleName, subject string, expiresAt time.Time) (Credential, map[string]string, error) {
	r, err := iss.role(roleName)
	if err != nil {
		return Credential{}, nil, err
	}

	now := iss.now()
	if expiresAt.IsZero() {
		expiresAt = now.Add(r.DefaultTTL)
	}
	maxExpiresAt := now.Add(r.MaxTTL)
	if !expiresAt.After(now) {
		return Credential{}, nil, fmt.Errorf("pgcred: role %q: expiry %s is not in the future", r.Name, expiresAt.UTC().Format(time.RFC3339))
	}
	if expiresAt.After(maxExpiresAt) {
		return Credential{}, nil, fmt.Errorf("pgcred: role %q: expiry %s: %w (%v)", r.Name, expiresAt.UTC().Format(time.RFC3339), ErrBeyondMaxTTL, r.MaxTTL)
	}

	username, err := newUsername(iss.rand, r.Name)
	if err != nil {
		return Credential{}, nil, fmt.Errorf("pgcred: %w", err)
	}
	generated, err := iss.passwords.Take()
	if err != nil {
		return Credential{}, nil, fmt.Errorf("pgcred: %w", err)
	}
	password, verifier := generated.password, generated.verifier

	var sql strings.Builder
	err = r.creation.Execute(&sql, creationData{
		Username:   quoteIdentifier(username),
		Password:   quoteLiteral(verifier),
		Expiration: formatExpiry(expiresAt),
	})
	if err != nil {
		return Credential{}, nil, fmt.Errorf("pgcred: role %q: creation template: %w", r.Name, err)
	}

	if err := iss.create(ctx, r, username, sql.String(), expiresAt); err != nil {
		return Credential{}, nil, err
	}

	meta := map[string]string{
		MetaRole:         r.Name,
		MetaUsername:     username,
		MetaMaxExpiresAt: maxExpiresAt.UTC().Format(time.RFC3339Nano),
	}
	iss.log.InfoContext(ctx, "database login created",
		"role", r.Name, "username", username, "subject", subject,
		"expires_at", expiresAt.UTC())
	return Credential{Username: username, Password: password, DSN: loginDSN(r.DSN, username)}, meta, nil
}

// create runs the advisory lock, the rendered creation SQL and a check of
// the created role as one simple query message. PostgreSQL runs such a
// message as one implicit transaction, so a failed statement or check
// rolls back all of it, and issuance costs a single round trip.
//
// The check is a PL/pgSQL DO block, so the admin database needs the
// plpgsql language, which every database has unless someone dropped it.
func (iss *Issuer) create(ctx context.Context, r *role, username, sql string, expiresAt time.Time) error {
	// The dollar-quoted body cannot end early: the username is
	// [a-z0-9_] and the expiry is digits and punctuation without '$'.
	check := fmt.Sprintf(`DO $ward$
DECLARE
  r record;
BEGIN
  SELECT rolcanlogin, rolsuper, rolvaliduntil INTO r FROM pg_catalog.pg_roles WHERE rolname = %[1]s;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the creation template did not create role {{.Username}}';
  ELSIF NOT r.rolcanlogin THEN
    RAISE EXCEPTION 'the created role lacks LOGIN';
  ELSIF r.rolsuper THEN
    RAISE EXCEPTION 'the created role is a superuser';
  ELSIF r.rolvaliduntil IS NULL OR r.rolvaliduntil > %[2]s::timestamptz + interval '1 second' THEN
    RAISE EXCEPTION 'the created role needs VALID UNTIL {{.Expiration}}';
  END IF;
END
$ward$`, quoteLiteral(username), formatExpiry(expiresAt))

	message := lockCatalog + ";\n" + sql + ";\n" + check
	// Exec without arguments uses the simple query protocol, which
	// allows several statements.
	if _, err := r.pool.Exec(ctx, message); err != nil {
		// The statement text holds the verifier, so errors are reported
		// by SQLSTATE and message only.
		return fmt.Errorf("pgcred: role %q: creation template: %w", r.Name, sqlError(r.backend, err))
	}
	return nil
}

// sqlError reduces a statement error to its SQLSTATE and message, because
// pgx errors may carry the statement text, or wraps a connection failure.
func sqlError(backend string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !isUnavailable(err) {
		return fmt.Errorf("%w: %s (SQLSTATE %s)", ErrTemplate, pgErr.Message, pgErr.Code)
	}
	return wrapUnavailable(backend, err)
}

// Renew moves the login's VALID UNTIL to newExpiry. Past the role's
// max_ttl it moves it to the max_ttl instead and returns a
// *ShortRenewalError (ErrBeyondMaxTTL) with that expiry. It returns ErrGone
// when the login no longer exists.
func (iss *Issuer) Renew(ctx context.Context, meta map[string]string, newExpiry time.Time) error {
	r, username, err := iss.lease(meta)
	if err != nil {
		return err
	}
	maxExpiresAt, err := time.Parse(time.RFC3339Nano, meta[MetaMaxExpiresAt])
	if err != nil {
		return fmt.Errorf("pgcred: lease meta %s=%q is invalid: %w", MetaMaxExpiresAt, meta[MetaMaxExpiresAt], err)
	}
	granted := newExpiry
	if granted.After(maxExpiresAt) {
		granted = maxExpiresAt
	}

	stmt := fmt.Sprintf("ALTER ROLE %s VALID UNTIL %s", quoteIdentifier(username), formatExpiry(granted))
	if _, err := r.pool.Exec(ctx, stmt); err != nil {
		if isUndefinedRole(err) {
			return fmt.Errorf("pgcred: renewing %s: %w", username, ErrGone)
		}
		return fmt.Errorf("pgcred: renewing %s: %w", username, wrapUnavailable(r.backend, err))
	}
	iss.log.InfoContext(ctx, "database login renewed", "role", r.Name, "username", username, "expires_at", granted.UTC())
	if granted.Before(newExpiry) {
		return &ShortRenewalError{Username: username, Granted: granted}
	}
	return nil
}

// lease returns the role and username recorded in lease metadata.
func (iss *Issuer) lease(meta map[string]string) (*role, string, error) {
	r, err := iss.role(meta[MetaRole])
	if err != nil {
		return nil, "", err
	}
	username := meta[MetaUsername]
	if !strings.HasPrefix(username, "ward_") || len(username) > maxIdentifier {
		return nil, "", fmt.Errorf("pgcred: lease meta %s=%q is not a ward login", MetaUsername, username)
	}
	return r, username, nil
}

// isUndefinedRole reports SQLSTATE 42704, undefined_object, which ALTER
// ROLE and DROP ROLE raise for a missing role.
func isUndefinedRole(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42704"
}

// loginDSN returns the admin DSN with the user replaced by username and no
// password.
func loginDSN(adminDSN, username string) string {
	if u, err := url.Parse(adminDSN); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.User = url.User(username)
		q := u.Query()
		q.Del("user")
		u.RawQuery = q.Encode()
		return u.String()
	}

	var kept []string
	for _, field := range strings.Fields(adminDSN) {
		if !strings.HasPrefix(field, "user=") {
			kept = append(kept, field)
		}
	}
	return strings.Join(append(kept, "user="+username), " ")
}
