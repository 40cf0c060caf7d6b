package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"ward.dev/ward/test/pgtest"
	"ward.dev/ward/test/wardtest"
)

// TestAgentDatabaseLogin fetches a PostgreSQL login through the broker: the
// agent renews its lease (same password) until the role's 8-second maximum,
// then obtains a new login, and a template renders a DSN that connects.
func TestAgentDatabaseLogin(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t)
	pg.CreateDB(t, "shop")
	pg.Exec(t, "shop", `CREATE TABLE products (id int PRIMARY KEY, name text); INSERT INTO products VALUES (1, 'tea');`)

	dir := t.TempDir()
	passFile := filepath.Join(dir, "pg.password")
	if err := os.WriteFile(passFile, []byte(pg.Password()), 0o600); err != nil {
		t.Fatal(err)
	}
	adminDSN := strings.Replace(pg.DSN("shop"), ":"+pg.Password()+"@", "@", 1)
	srv := wardtest.Start(t, wardtest.WithConfig(fmt.Sprintf(`databases:
  - name: shop-readonly
    dsn: %q
    password: {file: %s}
    creation: "CREATE ROLE {{.Username}} LOGIN PASSWORD {{.Password}} VALID UNTIL {{.Expiration}};\nGRANT SELECT ON products TO {{.Username}};"
    default_ttl: 4s
    max_ttl: 8s
`, adminDSN, passFile)))

	policy := filepath.Join(srv.DataDir(), "policy.csv")
	f, err := os.OpenFile(policy, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fmt.Fprintf(f, "\np, %s, dev, db/shop-readonly, issue, allow\np, %s, dev, db/shop-readonly, renew, allow\n", webID, webID)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := srv.Run(t, "policy", "reload"); code != 0 {
		t.Fatalf("ward policy reload = exit %d: %s", code, errOut)
	}

	out := filepath.Join(dir, "secrets")
	if err := os.Mkdir(out, 0o750); err != nil {
		t.Fatal(err)
	}
	a, logs := startAgent(t, dir, fmt.Sprintf(`
broker: {addr: %s, ca_file: %s}
auth: {method: join_token, join_token_file: %s}
output_dir: %s
credentials:
  - {name: shop, path: db/shop-readonly, ttl: 4s}
templates:
  - name: dsn
    inline: '{{ with cred "shop" }}{{ dsn "postgres" .username .password "127.0.0.1:%d" "shop" }}?sslmode=disable{{ end }}'
`, srv.Addr(), srv.CACertPath(), joinToken(t, srv, dir, webID), out, pg.Port()))

	waitFor(t, 20*time.Second, "the first login", func() bool { return a.Ready() == nil })
	checkMode(t, filepath.Join(out, "shop.password"), 0o600)
	readUser := func() string {
		b, _ := os.ReadFile(filepath.Join(out, "shop.username"))
		return string(b)
	}
	first := readUser()

	dsn, err := os.ReadFile(filepath.Join(out, "dsn"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, string(dsn))
	if err != nil {
		t.Fatalf("connect with the rendered DSN: %v", err)
	}
	var name string
	if err := conn.QueryRow(ctx, "SELECT name FROM products WHERE id = 1").Scan(&name); err != nil || name != "tea" {
		t.Errorf("SELECT = %q, %v, want tea", name, err)
	}
	conn.Close(ctx)

	waitFor(t, 30*time.Second, "a new login after the lease maximum", func() bool {
		u := readUser()
		return u != "" && u != first
	})
	if !strings.Contains(logs.String(), "credential lease renewed") {
		t.Error("agent log shows no lease renewal before the new login")
	}
	checkNoSecretsLogged(t, logs.String(), out)
}
