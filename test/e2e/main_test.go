// Package e2e tests ward end to end: `ward serve --dev` runs as a
// subprocess, and real clients (the ward CLI, openssl and curl) talk to it.
//
// Every server the tests start keeps its files under one directory until
// the run ends. TestMain then searches the logs and audit files of all of
// them for every secret the tests saw (issued private keys, join tokens,
// JWT-SVIDs, admin tokens) and fails the run if one is found.
package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"ward.dev/ward/test/wardtest"
)

// run is the state shared by the tests of one process.
var run struct {
	root string // holds one directory per started server

	mu      sync.Mutex
	servers []*wardtest.Server
	secrets []secret
}

// secret is a value that must never appear in a log or audit file.
type secret struct {
	name  string
	value []byte
}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	for _, tool := range []string{"openssl", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s not found in PATH; run make test-deps\n", tool)
			return 1
		}
	}

	var err error
	run.root, err = os.MkdirTemp("", "ward-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(run.root)

	code := wardtest.Main(m)
	if findings := scanForSecrets(); len(findings) > 0 {
		fmt.Fprintln(os.Stderr, "FAIL: secrets found in server output:")
		for _, f := range findings {
			fmt.Fprintln(os.Stderr, "  "+f)
		}
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: no secret found in the logs and audit files of %d server(s) (%d secrets checked)\n",
		len(run.servers), len(run.secrets))
	return code
}

// startDev starts a dev server whose files outlive the test, so that
// TestMain can search them.
func startDev(t *testing.T, opts ...wardtest.Option) *wardtest.Server {
	t.Helper()

	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	dir, err := os.MkdirTemp(run.root, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	s := wardtest.StartDev(t, append([]wardtest.Option{wardtest.WithDir(dir)}, opts...)...)

	run.mu.Lock()
	run.servers = append(run.servers, s)
	run.mu.Unlock()
	return s
}

// addSecret records a value that must not appear in any server output.
func addSecret(name string, value []byte) {
	if len(value) == 0 {
		return
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	run.secrets = append(run.secrets, secret{name: name, value: append([]byte(nil), value...)})
}

// scanForSecrets searches the stdout, stderr and audit file of every server
// for every recorded secret and for each server's admin token. A missing
// audit file is skipped: a configuration may put the audit log elsewhere.
func scanForSecrets() []string {
	run.mu.Lock()
	defer run.mu.Unlock()

	var findings []string
	for _, s := range run.servers {
		secrets := run.secrets
		if token, err := os.ReadFile(filepath.Join(s.DataDir(), "admin.token")); err == nil {
			secrets = append(secrets[:len(secrets):len(secrets)], secret{"admin token", []byte(strings.TrimSpace(string(token)))})
		}
		paths := []string{s.LogPath(), s.StdoutPath()}
		if _, err := os.Stat(s.AuditPath()); err == nil {
			paths = append(paths, s.AuditPath())
		}
		findings = append(findings, scanFiles(paths, secrets)...)
	}
	return findings
}

// scanFiles returns one finding per file and secret it contains, and one
// per file it cannot read.
func scanFiles(paths []string, secrets []secret) []string {
	var findings []string
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			findings = append(findings, fmt.Sprintf("%s: %v", path, err))
			continue
		}
		for _, sec := range secrets {
			if bytes.Contains(data, sec.value) {
				findings = append(findings, fmt.Sprintf("%s contains %s", path, sec.name))
			}
		}
	}
	return findings
}

// TestScanFilesFindsPlantedSecret shows that the final search would catch
// a leak: a secret planted in a file is reported, a clean file is not.
func TestScanFilesFindsPlantedSecret(t *testing.T) {
	dir := t.TempDir()
	leaky := filepath.Join(dir, "leaky.log")
	clean := filepath.Join(dir, "clean.log")
	if err := os.WriteFile(leaky, []byte("msg=issued token=wardjoin.s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(clean, []byte("msg=issued token_hmac=ab12\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	got := scanFiles([]string{leaky, clean}, []secret{{"join token", []byte("wardjoin.s3cr3t")}})
	if len(got) != 1 || !strings.Contains(got[0], "leaky.log contains join token") {
		t.Errorf("scanFiles = %q, want one finding for leaky.log", got)
	}
}
