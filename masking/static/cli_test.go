package static_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var wardBin struct {
	sync.Once
	path string
	err  error
}

// buildWard builds the ward command once per test binary.
func buildWard(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the ward binary; skipped with -short")
	}
	wardBin.Do(func() {
		dir, err := os.MkdirTemp("", "ward-cli-")
		if err != nil {
			wardBin.err = err
			return
		}
		wardBin.path = filepath.Join(dir, "ward")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", wardBin.path, "ward.dev/ward/cmd/ward").CombinedOutput()
		if err != nil {
			wardBin.err = errors.New(string(out))
		}
	})
	if wardBin.err != nil {
		t.Fatalf("building ward: %v", wardBin.err)
	}
	return wardBin.path
}

// runWard runs ward in dir and returns its exit code, stdout and stderr.
func runWard(t *testing.T, dir string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(buildWard(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("running ward %v: %v", args, err)
	return 0, "", ""
}

// TestCLIBadInput checks that each kind of bad input ends ward mask with
// exit code 1, one line on stderr naming file:line or table and row, and
// no output file.
func TestCLIBadInput(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runWard(t, dir, nil, "mask", "keygen", "--key-file", "masking.key")
	if code != 0 {
		t.Fatalf("ward mask keygen: exit %d, %s", code, stderr)
	}
	if fi, err := os.Stat(filepath.Join(dir, "masking.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("masking.key: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}

	dump, _ := os.ReadFile("testdata/dump.sql")
	good, _ := os.ReadFile("testdata/rules.yaml")
	files := map[string]string{
		"dump.sql":     string(dump),
		"broken.sql":   strings.Replace(string(dump), "2\tLeonie\t", "2\tLeonie", 1),
		"rules.yaml":   string(good),
		"syntax.yaml":  "columns:\n  public.customer.email: [\n",
		"unknown.yaml": "columns:\n  public.customer.email: scramble\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"yaml error", []string{"mask", "--rules", "syntax.yaml", "--key-file", "masking.key", "dump.sql", "out.sql"}, "syntax.yaml:2:"},
		{"unknown transformer", []string{"mask", "--rules", "unknown.yaml", "--key-file", "masking.key", "dump.sql", "out.sql"}, `unknown.yaml:2: public.customer.email: unknown transformer "scramble"`},
		{"missing key", []string{"mask", "--rules", "rules.yaml", "dump.sql", "out.sql"}, "rules.yaml:4: public.customer.first_name: fake: masking key missing"},
		{"malformed COPY line", []string{"mask", "--rules", "rules.yaml", "--key-file", "masking.key", "broken.sql", "out.sql"}, "broken.sql:23: table public.customer row 2: malformed input"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runWard(t, dir, nil, tc.args...)
			if code != 1 {
				t.Errorf("exit code = %d, want 1 (stderr %q)", code, stderr)
			}
			if !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("stderr = %q, want one line containing %q", stderr, tc.want)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
			if _, err := os.Stat(filepath.Join(dir, "out.sql")); !os.IsNotExist(err) {
				t.Errorf("out.sql exists after a failed run")
			}
		})
	}

	if code, _, stderr := runWard(t, dir, nil, "mask", "--rules", "rules.yaml"); code != 2 {
		t.Errorf("ward mask without files: exit %d, want 2 (stderr %q)", code, stderr)
	}
	if code, _, stderr := runWard(t, dir, nil, "mask", "--rules", "rules.yaml", "--key-file", "masking.key", "dump.sql", "out.sql"); code != 0 {
		t.Errorf("ward mask dump.sql: exit %d, want 0 (stderr %q)", code, stderr)
	}
}

// TestCLITargetRefusesRow checks that ward mask db exits 1 naming the table
// and row the target refused, and leaves no table behind.
func TestCLITargetRefusesRow(t *testing.T) {
	srv, srcDSN := chinookSource(t)
	dir := t.TempDir()
	rules := "columns:\n  public.customer.state: {transformer: redact, with: " + strings.Repeat("x", 50) + "}\n"
	os.WriteFile(filepath.Join(dir, "long.yaml"), []byte(rules), 0o600)
	dst := srv.CreateDB(t, "chinook_cli_fail")
	env := []string{"PATH=" + srv.BinDir() + string(os.PathListSeparator) + os.Getenv("PATH")}

	code, _, stderr := runWard(t, dir, env, "mask", "db", "--rules", "long.yaml", "--source", srcDSN, "--target", dst)
	if code != 1 {
		t.Errorf("exit code = %d, want 1 (stderr %q)", code, stderr)
	}
	last := stderr[strings.LastIndex(strings.TrimSpace(stderr), "\n")+1:]
	if !strings.HasPrefix(last, "ward: table public.customer row 1: target rejected the row") {
		t.Errorf("last stderr line = %q, want the table and row", last)
	}
	if strings.Contains(stderr, srv.Password()) {
		t.Errorf("stderr contains the database password")
	}
	if n := tableCount(t, dst); n != 0 {
		t.Errorf("target has %d tables after the failed copy, want 0", n)
	}
}

func TestCLITokenizeRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := runWard(t, dir, nil, "mask", "keygen", "--key-file", "k"); code != 0 {
		t.Fatalf("keygen: exit %d, %s", code, stderr)
	}
	code, stdout, stderr := runWard(t, dir, nil, "tokenize", "--key-file", "k", "--rule", "email", "--output", "json", "alice@example.com", "bob@example.com")
	if code != 0 {
		t.Fatalf("tokenize: exit %d, %s", code, stderr)
	}
	var got struct{ Tokens []string }
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || len(got.Tokens) != 2 {
		t.Fatalf("tokenize --output json = %q (%v), want two tokens", stdout, err)
	}

	code, stdout, _ = runWard(t, dir, nil, "detokenize", "--key-file", "k", "--rule", "email", got.Tokens[1])
	if code != 0 || stdout != "bob@example.com\n" {
		t.Errorf("detokenize = %d, %q, want 0 and bob@example.com", code, stdout)
	}
	code, _, stderr = runWard(t, dir, nil, "detokenize", "--key-file", "k", "--rule", "phone", got.Tokens[1])
	if code != 1 || !strings.Contains(stderr, "invalid token") {
		t.Errorf("detokenize in another domain = %d, %q, want 1 and invalid token", code, stderr)
	}
}
