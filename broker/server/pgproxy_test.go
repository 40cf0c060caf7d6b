package server

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"

	"ward.dev/ward/internal/config"
	"ward.dev/ward/test/pgtest"
)

// TestProxyLoginSeesMaskedValues issues a login with via_proxy and reads
// through ward's masking proxy: the email comes back redacted, the total
// in clear, and the login does not work on PostgreSQL itself.
// startProxyWithLogin starts PostgreSQL with a customer table, a ward
// server running the masking proxy in front of it, and returns a proxy
// login issued to a shop workload.
func startProxyWithLogin(t *testing.T) (*testServer, *pgtest.Server, dbResponse) {
	t.Helper()
	pg := pgtest.Start(t)
	pg.CreateDB(t, "shop")
	pg.Exec(t, "shop", `CREATE TABLE customer (id int PRIMARY KEY, email text, total numeric);
		INSERT INTO customer VALUES (1, 'alice@example.com', 12.50);`)

	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("rules.yaml", "version: 1\ndefault: keep\ncolumns:\n  public.customer.email: email\n")
	write("upstream.pw", pg.Password()+"\n")

	dataDir := t.TempDir()
	section := `listen: 127.0.0.1:0
upstream:
  address: 127.0.0.1:` + strconv.Itoa(pg.Port()) + `
  database: shop
  user: postgres
  password: {file: ` + filepath.Join(dir, "upstream.pw") + `}
  tls: disable
rules: ` + filepath.Join(dir, "rules.yaml") + `
unknown_lineage: redact
`
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(section), &node); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(c *config.Config) {
		c.DataDir = dataDir
		c.PGProxy = config.Section{Node: node.Content[0]}
	})
	workload := ts.workloadClient(t, "spiffe://ward.test/ns/shop/sa/web")
	// The default policy lets shop workloads get only their own SVIDs, so
	// grant this one the proxy login.
	policy := filepath.Join(dataDir, "policy.csv")
	f, _ := os.OpenFile(policy, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("p, spiffe://ward.test/ns/shop/sa/web, dev, db/shop-masked, issue, allow\n")
	f.Close()
	if err := ts.srv.ReloadPolicy(); err != nil {
		t.Fatal(err)
	}

	var login dbResponse
	if code := workload.call(t, "POST", "/v1/issue/db", map[string]any{"role": "shop-masked", "via_proxy": true}, &login); code != http.StatusOK {
		t.Fatalf("issue proxy login = %d", code)
	}

	return ts, pg, login
}

func TestProxyLoginSeesMaskedValues(t *testing.T) {
	ts, pg, login := startProxyWithLogin(t)
	if !strings.Contains(login.DSN, ts.srv.pgproxyAddr) {
		t.Errorf("DSN %q does not point at the proxy %s", login.DSN, ts.srv.pgproxyAddr)
	}

	ctx := context.Background()
	cfg, err := pgx.ParseConfig(login.DSN + "?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = login.Password
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	defer conn.Close(ctx)
	var email, total string
	if err := conn.QueryRow(ctx, "SELECT email, total::text FROM customer WHERE id = 1").Scan(&email, &total); err != nil {
		t.Fatal(err)
	}
	if email == "alice@example.com" {
		t.Error("email came back in clear through the proxy")
	}
	if total != "12.50" {
		t.Errorf("total = %q, want 12.50 unchanged", total)
	}

	// The login is the proxy's: PostgreSQL itself does not know it.
	direct, _ := pgx.ParseConfig(pg.DSN("shop"))
	direct.User, direct.Password = login.Username, login.Password
	if c, err := pgx.ConnectConfig(ctx, direct); err == nil {
		c.Close(ctx)
		t.Error("the proxy login connects to PostgreSQL directly")
	}
}

func TestProxySessionEndsOnRevoke(t *testing.T) {
	ts, _, login := startProxyWithLogin(t)
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(login.DSN + "?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = login.Password
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	defer conn.Close(ctx)
	if err := conn.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	if code := ts.call(t, "POST", "/v1/leases/revoke", map[string]string{"lease_id": login.LeaseID}, nil); code != http.StatusOK {
		t.Fatalf("revoke = %d", code)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err == nil {
		t.Error("the open proxy session still answers after its lease was revoked")
	}
}
