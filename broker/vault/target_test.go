package vault_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"ward.dev/ward/broker/vault"
	"ward.dev/ward/broker/vault/vaulttest"
	"ward.dev/ward/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// target is a Vault the suite runs against: the in-process stand-in, or a
// real Vault or OpenBao named by VAULT_ADDR and VAULT_TOKEN.
type target struct {
	name  string
	addr  string
	root  string
	stand *vaulttest.Server // nil for a real Vault
	admin *api.Client       // root client for setup
}

// targets returns the stand-in and, when VAULT_ADDR and VAULT_TOKEN are
// set, the real Vault.
func targets(t *testing.T) []*target {
	t.Helper()
	stand := vaulttest.New(t)
	out := []*target{{name: "standin", addr: stand.Addr(), root: stand.RootToken(), stand: stand}}
	if addr, tok := os.Getenv("VAULT_ADDR"), os.Getenv("VAULT_TOKEN"); addr != "" && tok != "" {
		out = append(out, &target{name: "vault", addr: addr, root: tok})
	}
	for _, tg := range out {
		cfg := api.DefaultConfig()
		cfg.Address = tg.addr
		cfg.MaxRetries = 0
		c, err := api.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.SetToken(tg.root)
		tg.admin = c
	}
	return out
}

// each runs f once per target as a subtest.
func each(t *testing.T, f func(t *testing.T, tg *target)) {
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) { f(t, tg) })
	}
}

// standinOnly skips a test that needs a fault the stand-in can inject.
func (tg *target) standinOnly(t *testing.T) {
	t.Helper()
	if tg.stand == nil {
		t.Skip("needs fault injection that only the stand-in offers")
	}
}

// write performs a setup write as root and ignores "already in use"
// errors from mounts that an earlier run enabled.
func (tg *target) write(t *testing.T, path string, data map[string]any) *api.Secret {
	t.Helper()
	s, err := tg.admin.Logical().Write(path, data)
	if err != nil && !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("setup write %s: %v", path, err)
	}
	return s
}

// putKV writes a KV v2 secret and returns its version.
func (tg *target) putKV(t *testing.T, mount, path string, data map[string]any) int {
	t.Helper()
	if tg.stand != nil {
		return tg.stand.PutKV(mount, path, data)
	}
	tg.write(t, "sys/mounts/"+mount, map[string]any{"type": "kv", "options": map[string]any{"version": "2"}})
	s, err := tg.admin.KVv2(mount).Put(context.Background(), path, data)
	if err != nil {
		t.Fatalf("setup kv put: %v", err)
	}
	return s.VersionMetadata.Version
}

// databaseRole returns "database/creds/<role>" for a role with the given
// TTLs. A real Vault gets a database secrets engine pointed at a pgtest
// cluster.
func (tg *target) databaseRole(t *testing.T, name string, defaultTTL, maxTTL time.Duration) string {
	t.Helper()
	if tg.stand != nil {
		tg.stand.AddDatabaseRole(name, vaulttest.DatabaseRole{DefaultTTL: defaultTTL, MaxTTL: maxTTL})
		return "database/creds/" + name
	}

	// NOTE: this branch runs only against a real Vault with the
	// PostgreSQL plugin, which the development machine of this suite
	// did not have.
	srv := pgtest.Shared(t)
	tg.write(t, "sys/mounts/database", map[string]any{"type": "database"})
	tg.write(t, "database/config/wardtest", map[string]any{
		"plugin_name":    "postgresql-database-plugin",
		"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@127.0.0.1:%d/postgres?sslmode=disable", srv.Port()),
		"username":       pgtest.Superuser,
		"password":       srv.Password(),
		"allowed_roles":  "*",
	})
	tg.write(t, "database/roles/"+name, map[string]any{
		"db_name":             "wardtest",
		"creation_statements": []string{`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`},
		"default_ttl":         fmt.Sprintf("%ds", int(defaultTTL.Seconds())),
		"max_ttl":             fmt.Sprintf("%ds", int(maxTTL.Seconds())),
	})
	return "database/creds/" + name
}

// appRole creates an AppRole whose tokens live ttl and returns its
// role_id and secret_id.
func (tg *target) appRole(t *testing.T, ttl time.Duration) (string, string) {
	t.Helper()
	if tg.stand != nil {
		roleID, secretID := "role-"+t.Name(), "secret-"+t.Name()
		tg.stand.AddAppRole(roleID, secretID, vaulttest.TokenOptions{TTL: ttl, Renewable: true})
		return roleID, secretID
	}
	tg.write(t, "sys/auth/approle", map[string]any{"type": "approle"})
	tg.write(t, "auth/approle/role/ward-test", map[string]any{"token_ttl": fmt.Sprintf("%ds", int(ttl.Seconds())), "token_max_ttl": "1h"})
	roleID, err := tg.admin.Logical().Read("auth/approle/role/ward-test/role-id")
	if err != nil {
		t.Fatal(err)
	}
	secretID := tg.write(t, "auth/approle/role/ward-test/secret-id", nil)
	return roleID.Data["role_id"].(string), secretID.Data["secret_id"].(string)
}

// pkiRole prepares a PKI mount "pki" with a role that allows SPIFFE URI
// SANs and returns the role name.
func (tg *target) pkiRole(t *testing.T) string {
	t.Helper()
	if tg.stand != nil {
		return "workload"
	}
	tg.write(t, "sys/mounts/pki", map[string]any{"type": "pki", "config": map[string]any{"max_lease_ttl": "24h"}})
	tg.write(t, "pki/root/generate/internal", map[string]any{"common_name": "ward test root", "ttl": "24h"})
	tg.write(t, "pki/roles/workload", map[string]any{"allow_any_name": true, "allowed_uri_sans": "spiffe://*", "max_ttl": "1h"})
	return "workload"
}

// transitMount prepares a Transit mount.
func (tg *target) transitMount(t *testing.T) string {
	t.Helper()
	if tg.stand == nil {
		tg.write(t, "sys/mounts/transit", map[string]any{"type": "transit"})
		tg.write(t, "transit/keys/ward-test", nil)
	}
	return "transit"
}

// tokenFile writes tok to a file for a token-auth SecretRef.
func tokenFile(t *testing.T, tok string) vault.SecretRef {
	t.Helper()
	path := t.TempDir() + "/token"
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return vault.SecretRef{File: path}
}

// newClient logs in with the root token and closes the client at the end.
func (tg *target) newClient(t *testing.T, opts vault.Options) *vault.Client {
	t.Helper()
	return tg.newClientWith(t, vault.Auth{Method: "token", Token: tokenFile(t, tg.root)}, opts)
}

func (tg *target) newClientWith(t *testing.T, auth vault.Auth, opts vault.Options) *vault.Client {
	t.Helper()
	if opts.RetryMin == 0 {
		opts.RetryMin = 20 * time.Millisecond
	}
	c, err := vault.New(context.Background(), vault.Config{Address: tg.addr, Auth: auth, Timeout: 5 * time.Second}, opts)
	if err != nil {
		t.Fatalf("vault.New = %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logBuffer collects slog output; safe for concurrent use.
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

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
