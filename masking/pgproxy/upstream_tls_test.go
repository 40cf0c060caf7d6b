package pgproxy_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// enableServerTLS turns on TLS in the shared cluster with the given
// certificate and key, and turns it off again when the test ends.
func enableServerTLS(t *testing.T, certFile, keyFile string) {
	t.Helper()
	pg, _ := chinookServer(t)
	dir, err := os.MkdirTemp("", "pgtls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	owner := -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("no postgres user to own the server key")
		}
		owner, _ = strconv.Atoi(u.Uid)
		if err := os.Chown(dir, owner, -1); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{certFile, keyFile} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if owner >= 0 {
			if err := os.Chown(dst, owner, -1); err != nil {
				t.Fatal(err)
			}
		}
	}

	set := func(sql ...string) {
		t.Helper()
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		for _, q := range sql {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	set("ALTER SYSTEM SET ssl_cert_file = '"+filepath.Join(dir, filepath.Base(certFile))+"'",
		"ALTER SYSTEM SET ssl_key_file = '"+filepath.Join(dir, filepath.Base(keyFile))+"'",
		"ALTER SYSTEM SET ssl = on", "SELECT pg_reload_conf()")
	t.Cleanup(func() {
		set("ALTER SYSTEM RESET ssl", "ALTER SYSTEM RESET ssl_cert_file", "ALTER SYSTEM RESET ssl_key_file", "SELECT pg_reload_conf()")
	})
}

func TestUpstreamVerifyFull(t *testing.T) {
	caFile, certFile, keyFile, _, _ := testPKI(t, testerID)
	enableServerTLS(t, certFile, keyFile)
	ctx := context.Background()

	good := startProxyUpstreamTLS(t, caFile)
	conn, err := pgx.Connect(ctx, good.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatalf("proxy with verify-full upstream: %v", err)
	}
	defer conn.Close(ctx)
	// Asked through the proxy, pg_stat_ssl is redacted: it is built on the
	// activity function, which shows other sessions' statements. So the
	// proxy's session is looked up directly by its backend's process ID.
	var pid int32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if ssl := direct(t, good.pg, fmt.Sprintf("SELECT ssl::text FROM pg_stat_ssl WHERE pid = %d", pid)); len(ssl) != 1 || ssl[0] != "true" {
		t.Errorf("pg_stat_ssl.ssl of the upstream session = %v, want true", ssl)
	}

	// A CA that did not sign the server certificate fails the login.
	otherCA, _, _, _, _ := testPKI(t, testerID)
	bad := startProxyUpstreamTLS(t, otherCA)
	_, err = pgconn.Connect(ctx, bad.proxyDSN("tester", testerPW))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "08006" {
		t.Errorf("upstream with unknown CA: err = %v, want SQLSTATE 08006", err)
	}
}

func startProxyUpstreamTLS(t *testing.T, caFile string) *fixture {
	t.Helper()
	return startProxyWith(t, "chinook", "  tls: verify-full\n  ca_file: "+caFile+"\n", "")
}
