package static_test

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ward.dev/ward/test/pgtest"
)

// TestCLIInterruptDropsCopy sends SIGINT to ward mask db while it copies:
// it must exit 1 saying it was interrupted and leave the target without
// the tables it created.
func TestCLIInterruptDropsCopy(t *testing.T) {
	srv := pgtest.Shared(t)
	src := srv.CreateDB(t, "sigint_src")
	srv.Exec(t, "sigint_src", `
		CREATE TABLE visits (id bigint PRIMARY KEY, email text NOT NULL);
		INSERT INTO visits SELECT g, 'v' || g || '@example.org' FROM generate_series(1, 400000) g;`)
	dst := srv.CreateDB(t, "sigint_dst")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte("columns:\n  public.visits.email: redact\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(buildWard(t), "mask", "db", "--rules", "r.yaml", "--source", src, "--target", dst)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+srv.BinDir()+string(os.PathListSeparator)+os.Getenv("PATH"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	// The logger's "creating schema" line comes just before the target
	// gets its first table.
	lines := bufio.NewScanner(stderr)
	var out strings.Builder
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "creating schema") {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatal("ward mask db still running a minute after SIGINT")
	}

	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out.String(), "interrupted by a signal") {
		t.Errorf("ward mask db after SIGINT: %v, stderr:\n%s\nwant exit 1 and \"interrupted by a signal\"", err, out.String())
	}
	if n := tableCount(t, dst); n != 0 {
		t.Errorf("target has %d tables after the interrupted copy, want 0", n)
	}
}
