package pgtest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"ward.dev/ward/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func connect(t *testing.T, dsn string) (*pgx.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return pgx.Connect(ctx, dsn)
}

func TestSharedServesQueries(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := srv.CreateDB(t, "self_test")

	conn, err := connect(t, dsn)
	if err != nil {
		t.Fatalf("Connect(%s) = %v, want nil", srv.DSN("self_test"), err)
	}
	defer conn.Close(context.Background())

	var version string
	if err := conn.QueryRow(context.Background(), "SHOW server_version").Scan(&version); err != nil {
		t.Fatalf("SHOW server_version: %v", err)
	}
	var listen, enc string
	if err := conn.QueryRow(context.Background(), "SELECT current_setting('listen_addresses'), current_setting('password_encryption')").Scan(&listen, &enc); err != nil {
		t.Fatalf("reading settings: %v", err)
	}
	if listen != "127.0.0.1" {
		t.Errorf("listen_addresses = %q, want 127.0.0.1", listen)
	}
	if enc != "scram-sha-256" {
		t.Errorf("password_encryption = %q, want scram-sha-256", enc)
	}
	t.Logf("PostgreSQL %s on port %d, binaries in %s", version, srv.Port(), srv.BinDir())
}

func TestSharedRejectsWrongPassword(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := strings.Replace(srv.DSN("postgres"), srv.Password(), "wrong", 1)

	conn, err := connect(t, dsn)
	if err == nil {
		conn.Close(context.Background())
		t.Fatal("Connect with a wrong password = nil error, want an authentication failure")
	}
	if !strings.Contains(err.Error(), "password authentication failed") {
		t.Errorf("Connect with a wrong password = %v, want password authentication failed", err)
	}
}

func TestStopStartKeepsPortAndData(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(t, "postgres", "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
	port := srv.Port()

	srv.Stop(t)
	if conn, err := connect(t, srv.DSN("postgres")); err == nil {
		conn.Close(context.Background())
		t.Fatal("Connect after Stop = nil error, want connection refused")
	}

	srv.Start(t)
	if srv.Port() != port {
		t.Errorf("Port() after restart = %d, want %d", srv.Port(), port)
	}
	conn, err := connect(t, srv.DSN("postgres"))
	if err != nil {
		t.Fatalf("Connect after Start = %v, want nil", err)
	}
	defer conn.Close(context.Background())
	var v int
	if err := conn.QueryRow(context.Background(), "SELECT v FROM kept").Scan(&v); err != nil || v != 42 {
		t.Errorf("SELECT v FROM kept = %d, %v; want 42, nil", v, err)
	}
}

func TestStaleClusterReaped(t *testing.T) {
	if os.Getenv("PGTEST_REAP_CHILD") != "" {
		// The child starts a cluster and dies without cleanup.
		pgtest.Shared(t)
		os.Exit(0)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestStaleClusterReaped$")
	cmd.Env = append(os.Environ(), "PGTEST_REAP_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child test process: %v\n%s", err, out)
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "pgtest-*", "pg", "owner.pid"))
	var orphan string
	for _, d := range dirs {
		b, _ := os.ReadFile(d)
		if strings.TrimSpace(string(b)) == fmt.Sprint(cmd.Process.Pid) {
			orphan = filepath.Dir(filepath.Dir(d))
		}
	}
	if orphan == "" {
		t.Fatal("the child left no cluster directory behind, so there is nothing to reap")
	}

	// Every call of Shared or Start reaps, even when the shared cluster
	// of this process is already running.
	pgtest.Shared(t)
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphaned cluster directory %s still exists after Shared, err = %v", orphan, err)
	}
}
