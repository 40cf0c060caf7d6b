// Package pgtest starts throwaway PostgreSQL clusters for tests.
//
// A cluster is created with the server binaries installed on the machine
// (the Debian layout /usr/lib/postgresql/<version>/bin, newest version
// first, or the directory named by PGTEST_BINDIR). It listens only on
// 127.0.0.1 on a free port, keeps its data in a temporary directory and is
// tuned for speed, not durability (fsync=off). Host connections must log in
// with scram-sha-256, never trust, so a test can prove that a login fails.
// The superuser "postgres" gets a random password per cluster.
//
// When the tests run as root, initdb and pg_ctl run as the "postgres" OS
// user through runuser, because initdb refuses to run as root.
//
// When the binaries are missing, a test fails with a hint to run
// `make test-deps`; only outside CI (environment variable CI unset) is it
// skipped instead.
package pgtest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Superuser is the name of the cluster's superuser role.
const Superuser = "postgres"

// startTimeout bounds how long pg_ctl waits for the server to accept
// connections.
const startTimeout = 60 * time.Second

// maxSocketPath is the longest unix socket path this package uses, because
// Linux limits sun_path to 108 bytes including the terminating NUL.
const maxSocketPath = 100

// Server is one running (or stopped) PostgreSQL cluster. Its methods are
// safe for concurrent use, but Stop and Start of one Server should not race
// with each other.
type Server struct {
	binDir   string
	dir      string // owned by the OS user that runs the server
	dataDir  string
	logPath  string
	password string
	port     int
	runAs    string // OS user for server commands, "" for the current one

	mu      sync.Mutex
	running bool
}

// Start creates a cluster in tb.TempDir(), starts it and stops it when the
// test and its subtests finish.
//
// A test binary that is killed (timeout panic, SIGKILL) skips cleanup. The
// next Start or Shared in any test process stops such orphaned clusters.
func Start(tb testing.TB) *Server {
	tb.Helper()

	binDir := requireBinDir(tb)
	reapStale(binDir)
	s, err := newServer(binDir, tb.TempDir())
	if err != nil {
		tb.Fatalf("pgtest.Start: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.stop(); err != nil {
			tb.Errorf("pgtest: stopping cluster on port %d: %v", s.port, err)
		}
	})
	return s
}

// DSN returns a superuser connection string for database db over TCP on
// 127.0.0.1. The password is in the string.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable",
		Superuser, s.password, s.port, db)
}

// Port returns the TCP port the cluster listens on. It stays the same across
// Stop and Start.
func (s *Server) Port() int { return s.port }

// BinDir returns the directory holding psql, pg_dump, pgbench and the
// server binaries.
func (s *Server) BinDir() string { return s.binDir }

// Password returns the superuser's password.
func (s *Server) Password() string { return s.password }

// LogPath returns the path of the server log.
func (s *Server) LogPath() string { return s.logPath }

// Stop shuts the server down (fast mode) and keeps its data, so Start can
// bring it back on the same port. Use it to test backend outages.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	if err := s.stop(); err != nil {
		tb.Fatalf("pgtest: Stop: %v", err)
	}
}

// Start starts a server that Stop shut down, with the same data directory
// and port.
func (s *Server) Start(tb testing.TB) {
	tb.Helper()
	if err := s.start(); err != nil {
		tb.Fatalf("pgtest: Start: %v", err)
	}
}

// newServer initializes a cluster under parent and starts it. On error
// nothing keeps running.
func newServer(binDir, parent string) (*Server, error) {
	runAs, err := serverUser()
	if err != nil {
		return nil, err
	}

	s := &Server{binDir: binDir, runAs: runAs}
	s.dir = filepath.Join(parent, "pg")
	s.dataDir = filepath.Join(s.dir, "data")
	s.logPath = filepath.Join(s.dir, "server.log")
	s.password, err = randomPassword()
	if err != nil {
		return nil, err
	}

	if err := s.prepareDir(parent); err != nil {
		return nil, err
	}
	if err := s.writeOwner(); err != nil {
		return nil, err
	}
	if err := s.initdb(); err != nil {
		return nil, err
	}

	// A free port found by binding :0 may be taken by another test process
	// before the server binds it, so a failed start is retried on a new port.
	for attempt := 0; ; attempt++ {
		s.port, err = freePort()
		if err != nil {
			return nil, err
		}
		if err := s.writeConfig(); err != nil {
			return nil, err
		}
		err = s.start()
		if err == nil {
			return s, nil
		}
		if attempt == 2 {
			return nil, err
		}
	}
}

// prepareDir creates the cluster directory and, when the server runs as
// another OS user, hands it over and makes its parents traversable.
func (s *Server) prepareDir(parent string) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("creating cluster directory: %w", err)
	}
	if s.runAs == "" {
		return nil
	}

	u, err := user.Lookup(s.runAs)
	if err != nil {
		return fmt.Errorf("looking up OS user %q: %w", s.runAs, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(s.dir, uid, gid); err != nil {
		return fmt.Errorf("handing %s to OS user %q: %w", s.dir, s.runAs, err)
	}

	// t.TempDir creates its top directory with mode 0700 owned by root,
	// so the server user could not reach its data directory. Add only the
	// search bit for others, on the directories between parent and the
	// system temporary directory, which are this test's own.
	top := filepath.Clean(os.TempDir())
	for d := filepath.Clean(parent); d != top && strings.HasPrefix(d, top+"/"); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("checking %s: %w", d, err)
		}
		if fi.Mode().Perm()&0o001 != 0 {
			continue
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
			return fmt.Errorf("making %s traversable for OS user %q: %w", d, s.runAs, err)
		}
	}
	return nil
}

func (s *Server) initdb() error {
	pwfile := filepath.Join(s.dir, "pwfile")
	if err := s.writeFile(pwfile, s.password+"\n"); err != nil {
		return err
	}
	defer os.Remove(pwfile)

	out, err := s.run("initdb",
		"-D", s.dataDir,
		"-U", Superuser,
		"--pwfile="+pwfile,
		"--auth=scram-sha-256",
		"--encoding=UTF8",
		"--no-locale",
		"--no-sync",
		"--no-instructions",
	)
	if err != nil {
		return fmt.Errorf("initdb failed: %w\n%s", err, out)
	}

	hba := "# written by pgtest: password logins only, loopback only\n" +
		"local all all scram-sha-256\n" +
		"host  all all 127.0.0.1/32 scram-sha-256\n" +
		"host  all all ::1/128 scram-sha-256\n"
	return s.writeFile(filepath.Join(s.dataDir, "pg_hba.conf"), hba)
}

// writeConfig writes the settings that pgtest controls into
// postgresql.auto.conf, which the server reads after postgresql.conf.
func (s *Server) writeConfig() error {
	socketDir := s.dir
	if len(socketDir)+len("/.s.PGSQL.65535") > maxSocketPath {
		// Long test names make long temporary paths. Without a socket
		// the server still serves TCP, which is all DSN uses.
		socketDir = ""
	}

	settings := [][2]string{
		{"listen_addresses", "127.0.0.1"},
		{"port", strconv.Itoa(s.port)},
		{"unix_socket_directories", socketDir},
		{"password_encryption", "scram-sha-256"},
		{"max_connections", "200"},
		{"shared_buffers", "32MB"},
		{"fsync", "off"},
		{"synchronous_commit", "off"},
		{"full_page_writes", "off"},
		{"wal_level", "minimal"},
		{"max_wal_senders", "0"},
		{"autovacuum", "off"},
		{"log_min_messages", "warning"},
		{"log_connections", "off"},
	}
	var b strings.Builder
	b.WriteString("# written by pgtest\n")
	for _, kv := range settings {
		fmt.Fprintf(&b, "%s = '%s'\n", kv[0], kv[1])
	}
	return s.writeFile(filepath.Join(s.dataDir, "postgresql.auto.conf"), b.String())
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.running {
		return nil
	}
	out, err := s.run("pg_ctl", "start", "-w",
		"-t", strconv.Itoa(int(startTimeout/time.Second)),
		"-D", s.dataDir, "-l", s.logPath)
	if err != nil {
		return fmt.Errorf("pg_ctl start on port %d failed: %w\n%s\nserver log:\n%s",
			s.port, err, out, tail(s.logPath, 2000))
	}
	s.running = true
	return nil
}

func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()

	if !s.running {
		return nil
	}
	out, err := s.run("pg_ctl", "stop", "-w", "-m", "fast", "-D", s.dataDir)
	if err != nil {
		return fmt.Errorf("pg_ctl stop failed: %w\n%s", err, out)
	}
	s.running = false
	return nil
}

// run executes a binary from binDir as the server's OS user.
func (s *Server) run(name string, args ...string) ([]byte, error) {
	bin := filepath.Join(s.binDir, name)
	var cmd *exec.Cmd
	if s.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", s.runAs, "--", bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGTZ=UTC")
	return cmd.CombinedOutput()
}

// writeFile writes a file the server user owns and only it can read.
func (s *Server) writeFile(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if s.runAs == "" {
		return nil
	}
	u, err := user.Lookup(s.runAs)
	if err != nil {
		return fmt.Errorf("looking up OS user %q: %w", s.runAs, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("handing %s to OS user %q: %w", path, s.runAs, err)
	}
	return nil
}

// serverUser returns the OS user that must run the server: "postgres" when
// this process is root, otherwise "" for the current user.
func serverUser() (string, error) {
	if os.Geteuid() != 0 {
		return "", nil
	}
	if _, err := user.Lookup("postgres"); err != nil {
		return "", fmt.Errorf("running as root, and initdb refuses root, but OS user \"postgres\" is missing (the postgresql package creates it; run `make test-deps`): %w", err)
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		return "", fmt.Errorf("running as root needs runuser to start the server as \"postgres\": %w", err)
	}
	return "postgres", nil
}

// findBinDir returns the directory of the newest installed server binaries.
func findBinDir() (string, error) {
	if dir := os.Getenv("PGTEST_BINDIR"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err != nil {
			return "", fmt.Errorf("PGTEST_BINDIR=%s: %w", dir, err)
		}
		return dir, nil
	}

	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", errors.New("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin; run `make test-deps` to install them")
	}
	version := func(p string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return v
	}
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	return filepath.Dir(matches[0]), nil
}

// requireBinDir returns the binary directory, or ends the test: a failure
// in CI, a skip elsewhere.
func requireBinDir(tb testing.TB) string {
	tb.Helper()
	dir, err := findBinDir()
	if err == nil {
		return dir
	}
	if os.Getenv("CI") == "" {
		tb.Skipf("pgtest: %v", err)
	}
	tb.Fatalf("pgtest: %v", err)
	return ""
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// randomPassword returns 24 random bytes in hex, which needs no escaping in
// a URL or a pwfile.
func randomPassword() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating superuser password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// tail returns at most the last n bytes of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
