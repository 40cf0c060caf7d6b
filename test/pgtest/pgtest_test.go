package pgtest_test

import (
	"context"
	"os"
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
