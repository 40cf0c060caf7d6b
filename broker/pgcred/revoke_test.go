package pgcred_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"ward.dev/ward/broker/pgcred"
	"ward.dev/ward/test/pgtest"
)

func TestRevokeEndsLoginAndSessions(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	db := newShop(t, srv)
	iss := newIssuer(t, pgcred.Options{}, adminRole(t, srv, db, "shop-readonly", readonlyCreation))

	cred, meta, err := iss.Issue(ctx, "shop-readonly", "spiffe://ward.test/web", time.Time{})
	if err != nil {
		t.Fatalf("Issue = %v", err)
	}
	open, err := loginAs(ctx, srv, db, cred)
	if err != nil {
		t.Fatalf("login before Revoke = %v, want nil", err)
	}
	defer open.Close(ctx)

	if err := iss.Revoke(ctx, meta); err != nil {
		t.Fatalf("Revoke = %v, want nil", err)
	}

	if _, err := open.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("query on a session opened before Revoke = nil error, want the session terminated")
	}
	conn, err := loginAs(ctx, srv, db, cred)
	if err == nil {
		conn.Close(ctx)
		t.Fatal("login after Revoke = nil error, want authentication failure")
	}
	if sqlState(err) != "28P01" {
		t.Errorf("login after Revoke = %v, want invalid_password (28P01)", err)
	}
	if roleExists(t, srv, cred.Username) {
		t.Errorf("role %s exists after Revoke, want dropped", cred.Username)
	}
}

func TestRevokeRoleWithGrantsAndObjects(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	db := newShop(t, srv)
	other := newShop(t, srv)

	creation := `CREATE ROLE {{.Username}} LOGIN PASSWORD {{.Password}} VALID UNTIL {{.Expiration}};
GRANT USAGE, CREATE ON SCHEMA app TO {{.Username}};
GRANT USAGE, SELECT ON SEQUENCE app.order_ids TO {{.Username}};
GRANT SELECT ON products TO {{.Username}};`
	iss := newIssuer(t, pgcred.Options{}, adminRole(t, srv, db, "shop-writer", creation))

	cred, meta, err := iss.Issue(ctx, "shop-writer", "spiffe://ward.test/writer", time.Time{})
	if err != nil {
		t.Fatalf("Issue = %v", err)
	}

	conn, err := loginAs(ctx, srv, db, cred)
	if err != nil {
		t.Fatalf("login = %v", err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE app.orders (id bigint DEFAULT nextval('app.order_ids')); INSERT INTO app.orders DEFAULT VALUES"); err != nil {
		t.Fatalf("login creating its own table = %v, want nil", err)
	}
	conn.Close(ctx)

	// A privilege in a second database must be found and dropped too.
	srv.Exec(t, other, "GRANT SELECT ON products TO "+pgx.Identifier{cred.Username}.Sanitize())

	if err := iss.Revoke(ctx, meta); err != nil {
		t.Fatalf("Revoke = %v, want nil", err)
	}
	if roleExists(t, srv, cred.Username) {
		t.Fatalf("role %s exists after Revoke, want dropped", cred.Username)
	}

	admin, err := pgx.Connect(ctx, srv.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var owner string
	var rows int
	if err := admin.QueryRow(ctx, "SELECT tableowner, (SELECT count(*) FROM app.orders) FROM pg_tables WHERE schemaname = 'app' AND tablename = 'orders'").Scan(&owner, &rows); err != nil {
		t.Fatalf("reading app.orders after Revoke: %v", err)
	}
	if owner != "postgres" || rows != 1 {
		t.Errorf("app.orders after Revoke: owner %q with %d rows, want postgres with 1 row", owner, rows)
	}
}

func TestRevokeGoneRoleReturnsNil(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	db := newShop(t, srv)
	iss := newIssuer(t, pgcred.Options{}, adminRole(t, srv, db, "shop-readonly", readonlyCreation))

	cred, meta, err := iss.Issue(ctx, "shop-readonly", "spiffe://ward.test/web", time.Time{})
	if err != nil {
		t.Fatalf("Issue = %v", err)
	}
	srv.Exec(t, db, "DROP OWNED BY "+pgx.Identifier{cred.Username}.Sanitize()+"; DROP ROLE "+pgx.Identifier{cred.Username}.Sanitize())

	if err := iss.Revoke(ctx, meta); err != nil {
		t.Errorf("Revoke of a dropped role = %v, want nil", err)
	}
	if err := iss.Revoke(ctx, meta); err != nil {
		t.Errorf("second Revoke = %v, want nil", err)
	}
	if err := iss.Renew(ctx, meta, time.Now().Add(time.Hour)); !errors.Is(err, pgcred.ErrGone) {
		t.Errorf("Renew of a dropped role = %v, want ErrGone", err)
	}
}

func TestConcurrentIssueAndRevokeMany(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	db := newShop(t, srv)
	iss := newIssuer(t, pgcred.Options{MaxConns: 3, RevokeConcurrency: 2}, adminRole(t, srv, db, "shop-readonly", readonlyCreation))

	// Concurrent issuance grants on the same table, which PostgreSQL
	// rejects with "tuple concurrently updated" unless ward serializes it.
	metas := make([]map[string]string, 20)
	var wg sync.WaitGroup
	for i := range metas {
		wg.Go(func() {
			_, meta, err := iss.Issue(ctx, "shop-readonly", "spiffe://ward.test/web", time.Time{})
			if err != nil {
				t.Errorf("concurrent Issue = %v, want nil", err)
			}
			metas[i] = meta
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	gone := pgx.Identifier{metas[3][pgcred.MetaUsername]}.Sanitize()
	srv.Exec(t, db, "DROP OWNED BY "+gone+"; DROP ROLE "+gone)

	errs := iss.RevokeMany(ctx, metas)
	for i, err := range errs {
		if err != nil {
			t.Errorf("RevokeMany[%d] = %v, want nil", i, err)
		}
	}
	admin, err := pgx.Connect(ctx, srv.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var usernames []string
	for _, meta := range metas {
		usernames = append(usernames, meta[pgcred.MetaUsername])
	}
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = ANY($1)", usernames).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d of %d roles left after RevokeMany, want 0", n, len(metas))
	}
}

func TestRevocationTemplate(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	db := newShop(t, srv)
	role := adminRole(t, srv, db, "custom-revoke", readonlyCreation)
	role.Revocation = "REVOKE ALL ON products FROM {{.Username}}"
	iss := newIssuer(t, pgcred.Options{}, role)

	cred, meta, err := iss.Issue(ctx, "custom-revoke", "spiffe://ward.test/web", time.Time{})
	if err != nil {
		t.Fatalf("Issue = %v", err)
	}
	if err := iss.Revoke(ctx, meta); err != nil {
		t.Fatalf("Revoke with a revocation template = %v, want nil", err)
	}
	if roleExists(t, srv, cred.Username) {
		t.Errorf("role %s exists after Revoke, want dropped", cred.Username)
	}
}

func TestLoginsListsOnlyThisRole(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	db := newShop(t, srv)
	iss := newIssuer(t, pgcred.Options{},
		adminRole(t, srv, db, "audit", readonlyCreation),
		adminRole(t, srv, db, "audit-ro", readonlyCreation))

	var want []string
	for range 3 {
		cred, meta, err := iss.Issue(ctx, "audit", "spiffe://ward.test/web", time.Time{})
		if err != nil {
			t.Fatalf("Issue = %v", err)
		}
		defer iss.Revoke(ctx, meta)
		want = append(want, cred.Username)
	}
	_, other, err := iss.Issue(ctx, "audit-ro", "spiffe://ward.test/web", time.Time{})
	if err != nil {
		t.Fatalf("Issue(audit-ro) = %v", err)
	}
	defer iss.Revoke(ctx, other)

	logins, err := iss.Logins(ctx, "audit")
	if err != nil {
		t.Fatalf("Logins = %v", err)
	}
	got := map[string]bool{}
	for _, l := range logins {
		got[l.Username] = true
		if l.ValidUntil.IsZero() || time.Until(l.ValidUntil) > time.Hour+time.Minute {
			t.Errorf("login %s ValidUntil = %v, want about an hour from now", l.Username, l.ValidUntil)
		}
	}
	if len(logins) != len(want) {
		t.Errorf("Logins(audit) returned %d logins, want %d (none of audit-ro)", len(logins), len(want))
	}
	for _, u := range want {
		if !got[u] {
			t.Errorf("Logins(audit) lacks %s", u)
		}
	}
}

func TestRevokeTemplateErrorKeepsLease(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	db := newShop(t, srv)
	role := adminRole(t, srv, db, "broken-revoke", readonlyCreation)
	// A missing role in the template raises SQLSTATE 42704, the same code
	// as a missing login, and must not read as "already revoked".
	role.Revocation = "REASSIGN OWNED BY {{.Username}} TO no_such_role"
	iss := newIssuer(t, pgcred.Options{}, role)

	cred, meta, err := iss.Issue(ctx, "broken-revoke", "spiffe://ward.test/web", time.Time{})
	if err != nil {
		t.Fatalf("Issue = %v", err)
	}
	if err := iss.Revoke(ctx, meta); err == nil {
		t.Error("Revoke with a failing revocation template = nil, want an error")
	}
	if !roleExists(t, srv, cred.Username) {
		t.Errorf("role %s is gone although its revocation failed", cred.Username)
	}
	srv.Exec(t, db, "DROP OWNED BY "+pgx.Identifier{cred.Username}.Sanitize()+"; DROP ROLE "+pgx.Identifier{cred.Username}.Sanitize())
}

func TestRevokeLoginsOfRole(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	db := newShop(t, srv)
	iss := newIssuer(t, pgcred.Options{}, adminRole(t, srv, db, "sweep", readonlyCreation))

	for range 5 {
		if _, _, err := iss.Issue(ctx, "sweep", "spiffe://ward.test/web", time.Time{}); err != nil {
			t.Fatalf("Issue = %v", err)
		}
	}
	n, err := iss.RevokeLogins(ctx, "sweep")
	if err != nil || n != 5 {
		t.Errorf("RevokeLogins = %d, %v; want 5, nil", n, err)
	}
	logins, err := iss.Logins(ctx, "sweep")
	if err != nil || len(logins) != 0 {
		t.Errorf("Logins after RevokeLogins = %d logins, %v; want none", len(logins), err)
	}
}
