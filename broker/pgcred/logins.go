package pgcred

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Login is a login role that ward created, as found in the database.
type Login struct {
	Username   string
	ValidUntil time.Time // zero when the role has no VALID UNTIL or 'infinity'
}

// Logins lists the logins of a configured role that exist in its
// database. The lease manager compares them with its lease records after a
// crash: a login created just before a crash may have no lease, and
// VALID UNTIL disables it but nothing drops it.
func (iss *Issuer) Logins(ctx context.Context, roleName string) ([]Login, error) {
	r, err := iss.role(roleName)
	if err != nil {
		return nil, err
	}

	// The pattern matches this role's prefix plus exactly the random
	// suffix, so a role whose name extends this one is not listed.
	pattern := fmt.Sprintf("^%s[a-z2-7]{%d}$", usernamePrefix(r.Name), usernameSuffixLen)
	rows, err := r.pool.Query(ctx,
		"SELECT rolname, rolvaliduntil FROM pg_roles WHERE rolname ~ $1 ORDER BY rolname", pattern)
	if err != nil {
		return nil, fmt.Errorf("pgcred: listing logins of role %q: %w", r.Name, wrapUnavailable(r.backend, err))
	}
	logins, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Login, error) {
		var l Login
		var validUntil pgtype.Timestamptz
		if err := row.Scan(&l.Username, &validUntil); err != nil {
			return l, err
		}
		if validUntil.Valid && validUntil.InfinityModifier == pgtype.Finite {
			l.ValidUntil = validUntil.Time
		}
		return l, nil
	})
	if err != nil {
		return nil, fmt.Errorf("pgcred: listing logins of role %q: %w", r.Name, wrapUnavailable(r.backend, err))
	}
	return logins, nil
}

// RevokeLogins revokes every login of a configured role that exists in its
// database, whether or not a lease records it, with the bounds of
// RevokeEach. It returns how many it revoked and the first error.
func (iss *Issuer) RevokeLogins(ctx context.Context, roleName string) (int, error) {
	logins, err := iss.Logins(ctx, roleName)
	if err != nil {
		return 0, err
	}

	seq := func(yield func(map[string]string) bool) {
		for _, l := range logins {
			if !yield(map[string]string{MetaRole: roleName, MetaUsername: l.Username}) {
				return
			}
		}
	}
	revoked := 0
	var first error
	iss.RevokeEach(ctx, seq, func(_ int, err error) {
		switch {
		case err == nil:
			revoked++
		case first == nil:
			first = err
		}
	})
	if first == nil && revoked < len(logins) {
		first = fmt.Errorf("pgcred: revoked %d of %d logins of role %q: %w", revoked, len(logins), roleName, context.Cause(ctx))
	}
	return revoked, first
}
