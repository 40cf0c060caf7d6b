package server

import (
	"context"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"ward.dev/ward/internal/config"
	"ward.dev/ward/test/pgtest"
)

// startWithDatabase starts a PostgreSQL cluster with a small shop schema and
// a ward server that issues logins of role shop-readonly on it.
func startWithDatabase(t *testing.T) (*testServer, *pgtest.Server) {
	t.Helper()
	pg := pgtest.Start(t)
	pg.CreateDB(t, "shop")
	pg.Exec(t, "shop", `CREATE TABLE products (id int PRIMARY KEY, name text);
		INSERT INTO products VALUES (1, 'tea');
		CREATE TABLE secrets (id int);`)
	t.Setenv("WARD_TEST_PG_PASSWORD", pg.Password())

	adminDSN := strings.Replace(pg.DSN("shop"), ":"+pg.Password()+"@", "@", 1)
	ts := startServer(t, func(c *config.Config) {
		c.Databases = []config.DatabaseRole{{
			Name:       "shop-readonly",
			DSN:        adminDSN,
			Password:   config.SecretRef{Env: "WARD_TEST_PG_PASSWORD"},
			Creation:   "CREATE ROLE {{.Username}} LOGIN PASSWORD {{.Password}} VALID UNTIL {{.Expiration}};\nGRANT SELECT ON products TO {{.Username}};",
			DefaultTTL: config.Duration{Duration: time.Hour},
			MaxTTL:     config.Duration{Duration: 2 * time.Hour},
		}}
	})
	return ts, pg
}

func TestIssueDBLoginReadsGrantedTablesOnly(t *testing.T) {
	ts, pg := startWithDatabase(t)
	var resp dbResponse
	if code := ts.call(t, "POST", "/v1/issue/db", map[string]string{"role": "shop-readonly", "ttl": "10m"}, &resp); code != http.StatusOK {
		t.Fatalf("issue db = %d, want 200", code)
	}

	ctx := context.Background()
	cfg, err := pgx.ParseConfig(resp.DSN)
	if err != nil {
		t.Fatalf("ParseConfig(%q) = %v", resp.DSN, err)
	}
	cfg.Password = resp.Password
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect with issued login: %v", err)
	}
	var name string
	if err := conn.QueryRow(ctx, "SELECT name FROM products WHERE id = 1").Scan(&name); err != nil || name != "tea" {
		t.Errorf("SELECT products = %q, %v, want tea", name, err)
	}
	if _, err := conn.Exec(ctx, "SELECT * FROM secrets"); err == nil {
		t.Error("SELECT secrets succeeded, want permission denied")
	}

	// psql, a real client, with the same login.
	psql := exec.Command(pg.BinDir()+"/psql", resp.DSN, "-tAc", "SELECT count(*) FROM products")
	psql.Env = append(psql.Environ(), "PGPASSWORD="+resp.Password)
	if out, err := psql.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Errorf("psql = %q, %v, want 1", out, err)
	}

	// Revocation ends the open session and the login.
	if code := ts.call(t, "POST", "/v1/leases/revoke", map[string]string{"lease_id": resp.LeaseID}, nil); code != http.StatusOK {
		t.Fatalf("revoke = %d, want 200", code)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("open session still works after revocation")
	}
	if c2, err := pgx.ConnectConfig(ctx, cfg); err == nil {
		c2.Close(ctx)
		t.Error("login still connects after revocation")
	}
}

func TestIssueDBUnavailableIs503(t *testing.T) {
	ts, pg := startWithDatabase(t)
	pg.Stop(t)
	req, _ := http.NewRequest("POST", ts.addr+"/v1/issue/db", strings.NewReader(`{"role":"shop-readonly"}`))
	req.Header.Set("Authorization", "Bearer "+ts.token)
	resp, err := ts.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("issue with database down = %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	pg.Start(t)
	if code := ts.call(t, "POST", "/v1/issue/db", map[string]string{"role": "shop-readonly"}, nil); code != http.StatusOK {
		t.Errorf("issue after database restart = %d, want 200", code)
	}
}

func TestRenewAtMaxTTLRotatesLogin(t *testing.T) {
	ts, _ := startWithDatabase(t)
	var first dbResponse
	// max_ttl is 2h: a 2h login cannot be extended, so the renewal rotates.
	if code := ts.call(t, "POST", "/v1/issue/db", map[string]string{"role": "shop-readonly", "ttl": "2h"}, &first); code != http.StatusOK {
		t.Fatalf("issue db = %d", code)
	}

	var rotated struct {
		Rotated           bool       `json:"rotated"`
		PreviousLeaseID   string     `json:"previous_lease_id"`
		PreviousExpiresAt time.Time  `json:"previous_expires_at"`
		Credential        dbResponse `json:"credential"`
	}
	if code := ts.call(t, "POST", "/v1/leases/renew", map[string]string{"lease_id": first.LeaseID, "increment": "1h"}, &rotated); code != http.StatusOK {
		t.Fatalf("renew at max TTL = %d", code)
	}
	if !rotated.Rotated || rotated.PreviousLeaseID != first.LeaseID {
		t.Fatalf("renew response = %+v, want a rotation of %s", rotated, first.LeaseID)
	}
	if rotated.Credential.Username == first.Username || rotated.Credential.Password == "" {
		t.Errorf("rotation returned username %q, want a new login", rotated.Credential.Username)
	}
	old, err := ts.srv.leases.Get(context.Background(), first.LeaseID)
	if err != nil {
		t.Fatal(err)
	}
	if old.State != "active" || !old.ExpiresAt.Equal(rotated.PreviousExpiresAt) {
		t.Errorf("previous lease = %s until %s, want active until %s (the grace period)", old.State, old.ExpiresAt, rotated.PreviousExpiresAt)
	}
}

func TestExpiredDBLoginDroppedBySweeper(t *testing.T) {
	ts, pg := startWithDatabase(t)
	var resp dbResponse
	if code := ts.call(t, "POST", "/v1/issue/db", map[string]string{"role": "shop-readonly", "ttl": "2s"}, &resp); code != http.StatusOK {
		t.Fatalf("issue db = %d", code)
	}

	// No call: the sweeper ends the lease at its expiry and drops the role.
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pg.DSN("shop"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var exists bool
		if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", resp.Username).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if !exists {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("role %s still exists 20s after its 2s lease expired", resp.Username)
		}
		time.Sleep(200 * time.Millisecond)
	}
	l, err := ts.srv.leases.Get(ctx, resp.LeaseID)
	if err != nil || l.State != "expired" {
		t.Errorf("lease state = %q, %v, want expired", l.State, err)
	}
}
