// Package wardtest builds the ward binary and runs `ward serve` as a
// subprocess for end-to-end tests.
//
// Build compiles cmd/ward once per test process. StartDev (or Start with
// WithConfig) starts a server on a free loopback port in a temporary
// directory, waits until it prints its address and answers GET /v1/health,
// and stops it when the test ends. Server's methods run CLI commands with the
// server's WARD_* environment and send API requests with the admin token.
//
// Security contract for tests: servers listen on 127.0.0.1 only, the child
// environment carries no WARD_* variables from the developer's shell, and
// every wait is bounded. A server process gets SIGKILL if the test process
// dies (Linux only), so a crashed test leaves no server running.
package wardtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// build holds the result of the one build per process.
var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Build compiles ward.dev/ward/cmd/ward once per process and returns the
// path of the binary. The test fails if the build fails. Call Main from
// TestMain to remove the binary when the tests finish.
func Build(tb testing.TB) string {
	tb.Helper()

	build.once.Do(func() {
		build.path, build.err = compile()
	})
	if build.err != nil {
		tb.Fatalf("wardtest.Build: %v", build.err)
	}
	return build.path
}

// Main runs the tests and then removes the binary that Build made. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(wardtest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if build.dir != "" {
		if err := os.RemoveAll(build.dir); err != nil {
			fmt.Fprintf(os.Stderr, "wardtest: remove %s: %v\n", build.dir, err)
		}
	}
	return code
}

func compile() (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}

	// The module root is where go.mod sits; the test runs in its own
	// package directory somewhere below it.
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("no go.mod found from %s", mustGetwd())
	}

	build.dir, err = os.MkdirTemp("", "wardtest-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(build.dir, "ward")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/ward")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/ward: %w\n%s", err, out)
	}
	return bin, nil
}

func mustGetwd() string {
	wd, err := os.Getwd()
	if err != nil {
		return "?"
	}
	return wd
}
