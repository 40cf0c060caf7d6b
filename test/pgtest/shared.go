package pgtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var shared struct {
	once sync.Once
	srv  *Server
	dir  string
	err  error
}

// Shared returns one cluster for the whole test binary, started on first
// use. It outlives the test that started it, so stop it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
//
// or call Close after m.Run. Tests that share it should each work in their
// own database (CreateDB) or roles with unique names.
func Shared(tb testing.TB) *Server {
	tb.Helper()

	binDir := requireBinDir(tb)
	reapStale(binDir)
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "pgtest-")
		if shared.err != nil {
			return
		}
		shared.srv, shared.err = newServer(binDir, shared.dir)
	})
	if shared.err != nil {
		tb.Fatalf("pgtest.Shared: %v", shared.err)
	}
	return shared.srv
}

// Close stops the cluster that Shared started, if any, and removes its
// directory. It is safe to call when Shared was never used.
func Close() error {
	var err error
	if shared.srv != nil {
		err = shared.srv.stop()
	}
	if shared.dir != "" {
		if rmErr := os.RemoveAll(shared.dir); err == nil && rmErr != nil {
			err = rmErr
		}
	}
	return err
}

// Run runs the tests and then Close, and returns the exit code for os.Exit.
func Run(m *testing.M) int {
	code := m.Run()
	if err := Close(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: closing shared cluster: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// CreateDB creates database name, owned by the superuser, and returns its
// superuser DSN.
func (s *Server) CreateDB(tb testing.TB, name string) string {
	tb.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		tb.Fatalf("pgtest: connecting on port %d: %v", s.port, err)
	}
	defer conn.Close(ctx)

	// From PostgreSQL 15 on, CREATE DATABASE writes the template's pages
	// to WAL by default. Copying the files is several times faster for
	// the small databases of tests.
	stmt := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	var version int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		tb.Fatalf("pgtest: reading server version: %v", err)
	}
	if version >= 150000 {
		stmt += " STRATEGY FILE_COPY"
	}
	if _, err := conn.Exec(ctx, stmt); err != nil {
		tb.Fatalf("pgtest: creating database %q: %v", name, err)
	}
	return s.DSN(name)
}

// Exec runs SQL statements as the superuser in database db and fails the
// test on error.
func (s *Server) Exec(tb testing.TB, db, sql string) {
	tb.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	conn, err := pgx.Connect(ctx, s.DSN(db))
	if err != nil {
		tb.Fatalf("pgtest: connecting to %q on port %d: %v", db, s.port, err)
	}
	defer conn.Close(ctx)

	// The simple protocol allows several statements in one string.
	if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		tb.Fatalf("pgtest: executing in %q: %v\nSQL: %s", db, err, firstLine(sql))
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}
