package pgcred

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"ward.dev/ward/broker/lease"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// terminateWaitMillis bounds how long pg_terminate_backend waits for each
// session to exit (the timeout argument exists since PostgreSQL 14).
const terminateWaitMillis = 5000

// lockCatalog serializes ward's grants and revocations within a database,
// across goroutines and replicas. Without it, two transactions that change
// the ACL of the same table fail with "tuple concurrently updated". The
// key is the ASCII of "wardpgcr". The lock ends with the transaction.
const lockCatalog = "SELECT pg_advisory_xact_lock(8602282538962477938)"

// Revoke ends the login recorded in meta. It sets NOLOGIN and terminates
// the login's sessions. Then, in every database where PostgreSQL records
// them, it reassigns the objects the login owns to the admin role and drops
// its privileges, or runs the role's revocation template instead. Last it
// drops the role. It returns nil when the login no longer exists.
func (iss *Issuer) Revoke(ctx context.Context, meta map[string]string) error {
	r, username, err := iss.lease(meta)
	if err != nil {
		return err
	}

	cleanup, err := r.cleanupSQL(quoteIdentifier(username))
	if err != nil {
		return fmt.Errorf("pgcred: revoking %s: %w", username, err)
	}
	message := revokeMessage(username, cleanup)

	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgcred: revoking %s: %w", username, wrapUnavailable(r.backend, err))
	}
	defer conn.Release()
	_, err = conn.Conn().PgConn().Exec(ctx, message).ReadAll()

	// Objects and privileges in other databases make DROP ROLE fail, and
	// REASSIGN OWNED and DROP OWNED act only in the current database. They
	// are rare, so they are looked up only after that failure.
	if sqlState(err) == "2BP01" {
		err = iss.cleanupOthers(ctx, r, conn, username, cleanup)
		if err == nil {
			_, err = conn.Conn().PgConn().Exec(ctx, message).ReadAll()
		}
	}

	// SQLSTATE 42704 also covers other missing objects, for example in a
	// revocation template, so the role itself is looked up before the
	// lease counts as revoked.
	if isUndefinedRole(err) {
		var exists bool
		lookupErr := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", username).Scan(&exists)
		if lookupErr == nil && !exists {
			iss.log.InfoContext(ctx, "database login already gone", "role", r.Name, "username", username)
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("pgcred: revoking %s: %w", username, sqlError(r.backend, err))
	}
	iss.log.InfoContext(ctx, "database login revoked", "role", r.Name, "username", username)
	return nil
}

// revokeMessage returns a revocation as one simple query message, which
// costs one round trip.
//
// The explicit COMMIT after NOLOGIN ends the first implicit transaction,
// so NOLOGIN is in force before any session is terminated, and a
// terminated client cannot log in again. The rest is a second implicit
// transaction, so a failed step leaves the role as it was apart from
// NOLOGIN. A backend that passed the LOGIN check just before NOLOGIN
// committed may register only after the first terminate. So the backend
// table is read again, from a fresh snapshot, after DROP ROLE, with the
// role's OID kept in a transaction-local setting. A role that does not
// exist fails the first statement with SQLSTATE 42704.
func revokeMessage(username, cleanup string) string {
	ident := quoteIdentifier(username)

	// pg_stat_get_backend_idset reads the backend table more cheaply than
	// pg_stat_activity, which also joins pg_database and pg_authid.
	terminate := fmt.Sprintf("SELECT count(pg_terminate_backend(pg_stat_get_backend_pid(i), %d))"+
		" FROM pg_stat_get_backend_idset() i"+
		" WHERE pg_stat_get_backend_userid(i) = nullif(current_setting('ward.revoke_oid', true), '')::oid",
		terminateWaitMillis)

	return "ALTER ROLE " + ident + " NOLOGIN;\n" +
		"COMMIT;\n" +
		"SELECT set_config('ward.revoke_oid', oid::text, true) FROM pg_roles WHERE rolname = " + quoteLiteral(username) + ";\n" +
		terminate + ";\n" +
		lockCatalog + ";\n" +
		cleanup + ";\n" +
		"DROP ROLE " + ident + ";\n" +
		"SELECT pg_stat_clear_snapshot();\n" +
		terminate
}

// cleanupOthers runs cleanup in every other database where pg_shdepend
// records an object owned by, or a privilege granted to, username.
func (iss *Issuer) cleanupOthers(ctx context.Context, r *role, conn *pgxpool.Conn, username, cleanup string) error {
	rows, err := conn.Query(ctx, `SELECT DISTINCT d.datname FROM pg_shdepend s
		JOIN pg_database d ON d.oid = s.dbid
		WHERE s.refclassid = 'pg_authid'::regclass
		  AND s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = $1)
		  AND d.datname <> current_database()`, username)
	if err != nil {
		return err
	}
	others, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, db := range others {
		if err := iss.cleanupIn(ctx, r, db, cleanup); err != nil {
			return fmt.Errorf("in database %q: %w", db, err)
		}
	}
	return nil
}

// cleanupSQL returns the statements that clear what the role owns and was
// granted in one database.
func (r *role) cleanupSQL(ident string) (string, error) {
	if r.revocation == nil {
		return "REASSIGN OWNED BY " + ident + " TO CURRENT_USER;\nDROP OWNED BY " + ident, nil
	}
	var b strings.Builder
	if err := r.revocation.Execute(&b, revocationData{Username: ident}); err != nil {
		return "", fmt.Errorf("revocation template: %w", err)
	}
	return b.String(), nil
}

// cleanupIn runs cleanup in database db with the admin credentials.
func (iss *Issuer) cleanupIn(ctx context.Context, r *role, db, cleanup string) error {
	cfg := r.pool.Config().ConnConfig.Copy()
	cfg.Database = db
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return wrapUnavailable(r.backend, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	if _, err := conn.PgConn().Exec(ctx, lockCatalog+";\n"+cleanup).ReadAll(); err != nil {
		return sqlError(r.backend, err)
	}
	return nil
}

// RevokeMany revokes the leases in metas and returns one error (nil on
// success) per lease, in the same order. See RevokeEach for the bounds.
func (iss *Issuer) RevokeMany(ctx context.Context, metas []map[string]string) []error {
	return lease.RevokeMany(ctx, iss.revokeConcurrency, metas, iss.Revoke)
}

// RevokeEach revokes every lease that leases yields, with bounded
// concurrency, and calls done with each lease's position and result (see
// lease.RevokeEach).
func (iss *Issuer) RevokeEach(ctx context.Context, leases iter.Seq[map[string]string], done func(n int, err error)) {
	lease.RevokeEach(ctx, iss.revokeConcurrency, leases, iss.Revoke, done)
}
