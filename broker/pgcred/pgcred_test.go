package pgcred_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"ward.dev/ward/broker/pgcred"
	"ward.dev/ward/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

const shopSchema = `
CREATE TABLE products (id int PRIMARY KEY, name text);
INSERT INTO products VALUES (1, 'lamp');
CREATE TABLE customers (id int PRIMARY KEY, email text);
INSERT INTO customers VALUES (1, 'a@example.com');
CREATE SCHEMA app;
CREATE SEQUENCE app.order_ids;
`

const readonlyCreation = `CREATE ROLE {{.Username}} LOGIN PASSWORD {{.Password}} VALID UNTIL {{.Expiration}};
GRANT SELECT ON products TO {{.Username}};`

var dbSeq struct {
	sync.Mutex
	n int
}

// newShop creates a fresh database with shopSchema on the shared cluster
// and returns its name.
func newShop(t testing.TB, srv *pgtest.Server) string {
	t.Helper()
	dbSeq.Lock()
	dbSeq.n++
	name := fmt.Sprintf("shop%d", dbSeq.n)
	dbSeq.Unlock()

	srv.CreateDB(t, name)
	srv.Exec(t, name, shopSchema)
	return name
}

// adminRole returns a role config for database db whose admin password is
// read from a file.
func adminRole(t testing.TB, srv *pgtest.Server, db, name, creation string) pgcred.Role {
	t.Helper()
	pwFile := filepath.Join(t.TempDir(), "admin-password")
	if err := os.WriteFile(pwFile, []byte(srv.Password()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return pgcred.Role{
		Name:       name,
		DSN:        fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", srv.Port(), db),
		Password:   pgcred.SecretRef{File: pwFile},
		Creation:   creation,
		DefaultTTL: time.Hour,
		MaxTTL:     24 * time.Hour,
	}
}

// logBuffer collects slog output for searching; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newIssuer(t testing.TB, opts pgcred.Options, roles ...pgcred.Role) *pgcred.Issuer {
	t.Helper()
	iss, err := pgcred.New(roles, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(iss.Close)
	return iss
}

// loginAs connects to db as the issued login.
func loginAs(ctx context.Context, srv *pgtest.Server, db string, cred pgcred.Credential) (*pgx.Conn, error) {
	pw := cred.Password.Reveal()
	defer clear(pw)
	dsn := fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", cred.Username, pw, srv.Port(), db)
	return pgx.Connect(ctx, dsn)
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func roleExists(t *testing.T, srv *pgtest.Server, username string) bool {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), srv.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_roles WHERE rolname = $1", username).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestIssueGrantsOnlyTemplateTables(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	db := newShop(t, srv)
	iss := newIssuer(t, pgcred.Options{}, adminRole(t, srv, db, "shop-readonly", readonlyCreation))

	cred, meta, err := iss.Issue(ctx, "shop-readonly", "spiffe://ward.test/ns/shop/sa/web", time.Time{})
	if err != nil {
		t.Fatalf("Issue = %v, want nil", err)
	}
	if !strings.HasPrefix(cred.Username, "ward_shop_readonly_") || len(cred.Username) > 63 {
		t.Errorf("Username = %q, want ward_shop_readonly_<random>, at most 63 bytes", cred.Username)
	}
	if cred.Password.Len() != 43 {
		t.Errorf("Password.Len() = %d, want 43 (32 bytes base64url)", cred.Password.Len())
	}
	if strings.Contains(cred.DSN, "postgres@") || !strings.Contains(cred.DSN, cred.Username+"@") {
		t.Errorf("DSN = %q, want the login's username and no admin user", cred.DSN)
	}
	if meta[pgcred.MetaUsername] != cred.Username || meta[pgcred.MetaRole] != "shop-readonly" {
		t.Errorf("meta = %v, want role and username", meta)
	}
	defer iss.Revoke(ctx, meta)

	conn, err := loginAs(ctx, srv, db, cred)
	if err != nil {
		t.Fatalf("login as %s = %v, want nil", cred.Username, err)
	}
	defer conn.Close(ctx)

	var name string
	if err := conn.QueryRow(ctx, "SELECT name FROM products WHERE id = 1").Scan(&name); err != nil || name != "lamp" {
		t.Errorf("SELECT products = %q, %v; want lamp, nil", name, err)
	}
	var email string
	err = conn.QueryRow(ctx, "SELECT email FROM customers").Scan(&email)
	if sqlState(err) != "42501" {
		t.Errorf("SELECT customers error = %v, want insufficient_privilege (42501)", err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO products VALUES (2, 'desk')"); sqlState(err) != "42501" {
		t.Errorf("INSERT products error = %v, want insufficient_privilege (42501)", err)
	}
	if _, err := conn.Exec(ctx, "CREATE ROLE escalate"); sqlState(err) != "42501" {
		t.Errorf("CREATE ROLE error = %v, want insufficient_privilege (42501)", err)
	}
}

func TestValidUntilRejectsExpiredLogin(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	db := newShop(t, srv)

	// The issuer's clock runs an hour behind the server's, so a lease
	// that is valid for the issuer has already expired for PostgreSQL.
	behind := func() time.Time { return time.Now().Add(-time.Hour) }
	iss := newIssuer(t, pgcred.Options{Now: behind}, adminRole(t, srv, db, "shop-readonly", readonlyCreation))

	cred, meta, err := iss.Issue(ctx, "shop-readonly", "spiffe://ward.test/web", time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatalf("Issue = %v", err)
	}
	defer iss.Revoke(ctx, meta)

	conn, err := loginAs(ctx, srv, db, cred)
	if err == nil {
		conn.Close(ctx)
		t.Fatal("login past VALID UNTIL = nil error, want authentication failure")
	}
	if sqlState(err) != "28P01" {
		t.Errorf("login past VALID UNTIL = %v, want invalid_password (28P01)", err)
	}

	// Renewal moves VALID UNTIL forward, so the same password works again.
	if err := iss.Renew(ctx, meta, time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("Renew = %v, want nil", err)
	}
	conn, err = loginAs(ctx, srv, db, cred)
	if err != nil {
		t.Fatalf("login after Renew = %v, want nil", err)
	}
	conn.Close(ctx)
}

func TestRenewBeyondMaxTTL(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	db := newShop(t, srv)
	iss := newIssuer(t, pgcred.Options{}, adminRole(t, srv, db, "shop-readonly", readonlyCreation))

	_, meta, err := iss.Issue(ctx, "shop-readonly", "spiffe://ward.test/web", time.Time{})
	if err != nil {
		t.Fatalf("Issue = %v", err)
	}
	defer iss.Revoke(ctx, meta)

	err = iss.Renew(ctx, meta, time.Now().Add(25*time.Hour))
	var short *pgcred.ShortRenewalError
	if !errors.Is(err, pgcred.ErrBeyondMaxTTL) || !errors.As(err, &short) {
		t.Errorf("Renew past max_ttl = %v, want *ShortRenewalError", err)
	} else if d := time.Until(short.Granted); d < 23*time.Hour || d > 24*time.Hour {
		t.Errorf("ShortRenewalError.Granted in %v, want the 24h max_ttl", d)
	}
	if _, _, err := iss.Issue(ctx, "shop-readonly", "spiffe://ward.test/web", time.Now().Add(25*time.Hour)); !errors.Is(err, pgcred.ErrBeyondMaxTTL) {
		t.Errorf("Issue past max_ttl = %v, want ErrBeyondMaxTTL", err)
	}
	if _, _, err := iss.Issue(ctx, "no-such-role", "spiffe://ward.test/web", time.Time{}); !errors.Is(err, pgcred.ErrUnknownRole) {
		t.Errorf("Issue(no-such-role) = %v, want ErrUnknownRole", err)
	}
}

func TestIssueRejectsUnsafeTemplates(t *testing.T) {
	tests := []struct {
		name     string
		creation string
	}{
		{"superuser", `CREATE ROLE {{.Username}} SUPERUSER LOGIN PASSWORD {{.Password}} VALID UNTIL {{.Expiration}}`},
		{"no VALID UNTIL", `CREATE ROLE {{.Username}} LOGIN PASSWORD {{.Password}}`},
		{"later VALID UNTIL", `CREATE ROLE {{.Username}} LOGIN PASSWORD {{.Password}} VALID UNTIL 'infinity'`},
		{"NOLOGIN", `CREATE ROLE {{.Username}} PASSWORD {{.Password}} VALID UNTIL {{.Expiration}}`},
		{"SQL error", `CREATE ROLE {{.Username}} LOGIN PASSWORD {{.Password}} VALID UNTIL {{.Expiration}}; GRANT SELECT ON missing_table TO {{.Username}}`},
	}
	ctx := context.Background()
	srv := pgtest.Shared(t)
	db := newShop(t, srv)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss := newIssuer(t, pgcred.Options{}, adminRole(t, srv, db, "unsafe", tt.creation))
			cred, _, err := iss.Issue(ctx, "unsafe", "spiffe://ward.test/web", time.Time{})
			if !errors.Is(err, pgcred.ErrTemplate) {
				t.Fatalf("Issue = %v, want ErrTemplate", err)
			}
			if cred.Username != "" {
				t.Errorf("Issue returned username %q with an error, want none", cred.Username)
			}
		})
	}

	// The transaction rolled back, so no generated role was left behind.
	admin, err := pgx.Connect(ctx, srv.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'ward\\_unsafe\\_%'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d ward_unsafe_ roles left after rejected templates, want 0", n)
	}
}

func TestIssueUnavailableThenRecovers(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Start(t)
	srv.CreateDB(t, "shop")
	srv.Exec(t, "shop", shopSchema)
	iss := newIssuer(t, pgcred.Options{ConnectTimeout: 2 * time.Second}, adminRole(t, srv, "shop", "shop-readonly", readonlyCreation))

	_, meta, err := iss.Issue(ctx, "shop-readonly", "spiffe://ward.test/web", time.Time{})
	if err != nil {
		t.Fatalf("Issue before outage = %v", err)
	}

	if err := iss.Ping(ctx); err != nil {
		t.Errorf("Ping before outage = %v, want nil", err)
	}
	srv.Stop(t)
	if err := iss.Ping(ctx); !errors.Is(err, pgcred.ErrUnavailable) {
		t.Errorf("Ping with the server stopped = %v, want ErrUnavailable", err)
	}
	_, _, err = iss.Issue(ctx, "shop-readonly", "spiffe://ward.test/web", time.Time{})
	if !errors.Is(err, pgcred.ErrUnavailable) {
		t.Fatalf("Issue with the server stopped = %v, want ErrUnavailable", err)
	}
	var unavailable *pgcred.UnavailableError
	if !errors.As(err, &unavailable) || !strings.Contains(unavailable.BackendName(), fmt.Sprintf("127.0.0.1:%d/shop", srv.Port())) {
		t.Errorf("Issue error = %#v, want *UnavailableError naming 127.0.0.1:%d/shop", err, srv.Port())
	}
	if strings.Contains(err.Error(), srv.Password()) {
		t.Errorf("Issue error contains the admin password: %v", err)
	}
	if err := iss.Renew(ctx, meta, time.Now().Add(2*time.Hour)); !errors.Is(err, pgcred.ErrUnavailable) {
		t.Errorf("Renew with the server stopped = %v, want ErrUnavailable", err)
	}
	if err := iss.Revoke(ctx, meta); !errors.Is(err, pgcred.ErrUnavailable) {
		t.Errorf("Revoke with the server stopped = %v, want ErrUnavailable", err)
	}

	srv.Start(t)
	cred, _, err := iss.Issue(ctx, "shop-readonly", "spiffe://ward.test/web", time.Time{})
	if err != nil {
		t.Fatalf("Issue after restart = %v, want nil", err)
	}
	if cred.Username == "" {
		t.Error("Issue after restart returned no username")
	}
	if err := iss.Renew(ctx, meta, time.Now().Add(2*time.Hour)); err != nil {
		t.Errorf("Renew after restart = %v, want nil", err)
	}
	if err := iss.Revoke(ctx, meta); err != nil {
		t.Errorf("Revoke after restart = %v, want nil", err)
	}
}

func TestLogsHoldNoPassword(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	db := newShop(t, srv)
	var logs logBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	iss := newIssuer(t, pgcred.Options{Logger: logger},
		adminRole(t, srv, db, "shop-readonly", readonlyCreation),
		adminRole(t, srv, db, "broken", readonlyCreation+"; GRANT SELECT ON missing TO {{.Username}}"))

	var passwords []string
	for range 3 {
		cred, meta, err := iss.Issue(ctx, "shop-readonly", "spiffe://ward.test/web", time.Time{})
		if err != nil {
			t.Fatalf("Issue = %v", err)
		}
		passwords = append(passwords, string(cred.Password.Reveal()))
		if err := iss.Renew(ctx, meta, time.Now().Add(2*time.Hour)); err != nil {
			t.Fatalf("Renew = %v", err)
		}
		if err := iss.Revoke(ctx, meta); err != nil {
			t.Fatalf("Revoke = %v", err)
		}
		if got := fmt.Sprintf("%v %+v %#v", cred, cred, cred); strings.Contains(got, passwords[len(passwords)-1]) {
			t.Errorf("formatting a Credential printed its password: %s", got)
		}
	}
	_, _, err := iss.Issue(ctx, "broken", "spiffe://ward.test/web", time.Time{})
	if err == nil {
		t.Fatal("Issue with a broken template = nil error, want ErrTemplate")
	}

	out := logs.String() + err.Error()
	if !strings.Contains(out, "database login revoked") {
		t.Fatalf("captured log lacks the revocation line, so the capture is broken:\n%s", out)
	}
	for _, secret := range append(passwords, srv.Password(), "SCRAM-SHA-256$") {
		if strings.Contains(out, secret) {
			t.Errorf("log or error contains secret %q:\n%s", secret, out)
		}
	}
}

func TestNewRejectsCollidingPrefixes(t *testing.T) {
	srv := pgtest.Shared(t)
	_, err := pgcred.New([]pgcred.Role{
		adminRole(t, srv, "postgres", "shop-ro", readonlyCreation),
		adminRole(t, srv, "postgres", "shop_ro", readonlyCreation),
	}, pgcred.Options{})
	if err == nil || !strings.Contains(err.Error(), "both make usernames") {
		t.Errorf("New(shop-ro, shop_ro) = %v, want an error about the shared username prefix", err)
	}
}

// leaseBackend is the shape in which ward's lease manager calls an issuer
// of one credential kind.
type leaseBackend[C any] interface {
	Issue(ctx context.Context, role, subject string, expiresAt time.Time) (C, map[string]string, error)
	Renew(ctx context.Context, meta map[string]string, newExpiry time.Time) error
	Revoke(ctx context.Context, meta map[string]string) error
}

var _ leaseBackend[pgcred.Credential] = (*pgcred.Issuer)(nil)
