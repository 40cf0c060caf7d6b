package e2e

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/test/wardtest"
)

// TestAuditFailureRefusesRequests starts ward with its audit log on
// /dev/full, where every write fails with ENOSPC: every audited request
// must get 503 and no credential.
func TestAuditFailureRefusesRequests(t *testing.T) {
	s := startDev(t, wardtest.WithConfig("audit:\n  path: /dev/full\n"))
	const id = "spiffe://ward.test/ns/shop/sa/web"

	if status, _ := s.DoWith(t, s.HTTPClient(), "", http.MethodGet, "/v1/health", nil); status != http.StatusOK {
		t.Fatalf("GET /v1/health = %d, want 200 (it writes no audit record)", status)
	}

	status, body := s.Do(t, http.MethodPost, "/v1/issue/x509", map[string]string{"csr": string(newCSR(t, id)), "spiffe_id": id})
	if status != http.StatusServiceUnavailable || !strings.Contains(wardtest.ErrorMessage(body), "audit log unavailable") {
		t.Errorf("POST /v1/issue/x509 with a failing audit log = %d %s, want 503 \"audit log unavailable\"", status, body)
	}
	if strings.Contains(string(body), "CERTIFICATE") {
		t.Errorf("POST /v1/issue/x509 with a failing audit log returned a certificate: %s", body)
	}

	_, stderr, code := s.Run(t, "token", "create", "--spiffe-id", id)
	if code != 1 || !strings.Contains(stderr, "audit log unavailable") {
		t.Errorf("ward token create with a failing audit log: exit %d, stderr %q; want 1 and \"audit log unavailable\"", code, stderr)
	}
	if strings.Contains(stderr, "wardjoin.") {
		t.Errorf("ward token create with a failing audit log printed a token: %q", stderr)
	}
}

// TestDataDirModes checks that everything secret in the data directory is
// readable by its owner only.
func TestDataDirModes(t *testing.T) {
	s := startDev(t)
	issueJoined(t, s, "spiffe://ward.test/ns/shop/sa/web", outDir(t, "svid"))

	info, err := os.Stat(s.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o700 {
		t.Errorf("data directory mode = %o, want 700", mode)
	}
	secret := []string{"kek.key", "keyset.sealed", "ca-key.sealed", "jwt-key.sealed", "audit-key.sealed", "admin.token", "ward.db", "audit.log"}
	for _, name := range secret {
		info, err := os.Stat(filepath.Join(s.DataDir(), name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if mode := info.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s mode = %o, want 600", name, mode)
		}
	}
	err = filepath.WalkDir(s.DataDir(), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm()&0o022 != 0 {
			t.Errorf("%s mode = %o, writable by group or others", path, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDamagedKeysStopStart shows that ward refuses to start, naming the
// file, when a sealed key does not decrypt.
func TestDamagedKeysStopStart(t *testing.T) {
	s := startDev(t)
	s.Stop()
	dataDir := s.DataDir()
	serve := []string{"--dev", "--data-dir", dataDir, "--listen", "127.0.0.1:0"}

	// Flip one byte of the sealed CA key: the AEAD tag no longer verifies.
	caKey := filepath.Join(dataDir, "ca-key.sealed")
	orig, err := os.ReadFile(caKey)
	if err != nil {
		t.Fatal(err)
	}
	damaged := append([]byte(nil), orig...)
	damaged[len(damaged)/2] ^= 0x01
	if err := os.WriteFile(caKey, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr := serveMustFail(t, s, serve...)
	if code != 1 || !strings.Contains(stderr, "ca-key.sealed") {
		t.Errorf("ward serve with a damaged ca-key.sealed: exit %d, stderr %q; want 1 naming ca-key.sealed", code, stderr)
	}
	if err := os.WriteFile(caKey, orig, 0o600); err != nil {
		t.Fatal(err)
	}

	// With the files restored, the server starts again.
	s.Restart()
}

// TestWrongKEKStopsStart restarts ward with another key in kek.key. A
// local KEK that does not open the keyset is the wrong key or damage, not an
// outage that waiting could fix, so the start must fail naming both files
// and change nothing; with the right kek.key back it starts again.
func TestWrongKEKStopsStart(t *testing.T) {
	s := startDev(t)
	kekPath := filepath.Join(s.DataDir(), "kek.key")
	origKEK, err := os.ReadFile(kekPath)
	if err != nil {
		t.Fatal(err)
	}
	otherKEK := make([]byte, len(origKEK))
	if _, err := rand.Read(otherKEK); err != nil {
		t.Fatal(err)
	}

	s.Stop()
	if err := os.WriteFile(kekPath, otherKEK, 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr := serveMustFail(t, s, "--dev", "--data-dir", s.DataDir(), "--listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(stderr, "keyset.sealed") || !strings.Contains(stderr, "kek.key") {
		t.Errorf("ward serve with a wrong kek.key: exit %d, stderr %q; want 1 naming keyset.sealed and kek.key", code, stderr)
	}

	if err := os.WriteFile(kekPath, origKEK, 0o600); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	checkUnsealedIssues(t, s)
}

// TestMissingKEKStopsStart removes kek.key from a data directory whose
// keyset it sealed. The server must exit naming kek.key, or keep running
// sealed, and must not write a new KEK that can never open the existing
// keyset.
func TestMissingKEKStopsStart(t *testing.T) {
	s := startDev(t)
	s.Stop()
	kekPath := filepath.Join(s.DataDir(), "kek.key")
	if err := os.Remove(kekPath); err != nil {
		t.Fatal(err)
	}

	exited, code, stderr := serveBriefly(t, s, 10*time.Second, "--dev", "--data-dir", s.DataDir(), "--listen", "127.0.0.1:0")
	switch {
	case !exited:
		t.Logf("ward serve without kek.key kept running (sealed) for 10s")
	case code != 1 || !strings.Contains(stderr, "kek.key"):
		t.Errorf("ward serve without kek.key: exit %d, stderr %q; want 1 naming kek.key", code, stderr)
	}
	if _, err := os.Stat(kekPath); err == nil {
		t.Errorf("ward serve without kek.key created a new %s although keyset.sealed exists", kekPath)
	}
}

// serveMustFail runs `ward serve` with args and returns its exit code and
// stderr. It fails the test if the server is still running after 10s.
func serveMustFail(t *testing.T, s *wardtest.Server, args ...string) (code int, stderr string) {
	t.Helper()
	exited, code, stderr := serveBriefly(t, s, 10*time.Second, args...)
	if !exited {
		t.Fatalf("ward serve %s kept running for 10s, want it to exit (stderr: %s)", strings.Join(args, " "), stderr)
	}
	return code, stderr
}

// serveBriefly runs `ward serve` with args for at most timeout and reports
// whether it exited by itself, with its exit code and stderr. A server
// still running at the timeout is killed. Tests of a start that must fail
// use it, so a server that keeps running costs seconds and not the whole
// run's timeout.
func serveBriefly(t *testing.T, s *wardtest.Server, timeout time.Duration, args ...string) (exited bool, code int, stderr string) {
	t.Helper()
	cmd := exec.Command(wardtest.Build(t), append([]string{"serve"}, args...)...)
	cmd.Env = workloadEnv(s)
	var errOut strings.Builder
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	select {
	case err := <-done:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("ward serve: %v", err)
		}
		return true, cmd.ProcessState.ExitCode(), errOut.String()
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return false, -1, errOut.String()
	}
}

// checkSealed asserts that s is sealed: health and every call return 503,
// the log names file, and ward's trust bundle does not verify the throwaway
// certificate, so a client never sends it credentials.
func checkSealed(t *testing.T, s *wardtest.Server, file string) {
	t.Helper()
	if !s.Sealed() {
		t.Fatal("server is not sealed, want sealed")
	}
	dir := t.TempDir()

	out := mustTool(t, dir, "curl", "-sS", "-k", "--tlsv1.3", "-w", "\n%{http_code}", s.Addr()+"/v1/health")
	body, status := curlStatus(t, out)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, `"sealed"`) {
		t.Errorf("sealed GET /v1/health = %d %s, want 503 {\"status\":\"sealed\"}", status, body)
	}
	out = mustTool(t, dir, "curl", "-sS", "-k", "--tlsv1.3", "-X", "POST", "-d", "{}", "-w", "\n%{http_code}", s.Addr()+"/v1/issue/x509")
	body, status = curlStatus(t, out)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "sealed") {
		t.Errorf("sealed POST /v1/issue/x509 = %d %s, want 503 saying sealed", status, body)
	}
	// Anyone can reach the sealed listener, so its answer must not carry
	// the server's file layout or the cryptographic failure: those belong
	// in the log.
	if strings.Contains(body, s.DataDir()) || strings.Contains(body, "cipher:") {
		t.Errorf("sealed POST /v1/issue/x509 without credentials = %s: it shows the data directory or the decryption error to an unauthenticated client", body)
	}
	log, err := os.ReadFile(s.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), file) {
		t.Errorf("server log %s does not name %s as the reason for sealing", s.LogPath(), file)
	}

	_, stderr, code := runTool(t, dir, "curl", "-sS", "--tlsv1.3", "--cacert", s.CACertPath(), s.Addr()+"/v1/health")
	if code == 0 {
		t.Error("curl --cacert ca.pem to the sealed server: exit 0, want certificate verification to fail")
	}
	t.Logf("sealed server with ward's bundle: curl exit %d: %s", code, strings.TrimSpace(stderr))
}

// checkUnsealedIssues asserts that s issues certificates under its CA.
func checkUnsealedIssues(t *testing.T, s *wardtest.Server) {
	t.Helper()
	if s.Sealed() {
		t.Fatal("server still sealed")
	}
	const id = "spiffe://ward.test/ns/shop/sa/web"
	status, body := s.Do(t, http.MethodPost, "/v1/issue/x509", map[string]string{"csr": string(newCSR(t, id)), "spiffe_id": id})
	if status != http.StatusOK {
		t.Errorf("POST /v1/issue/x509 after unsealing = %d %s, want 200", status, body)
	}
}

// TestSecondServerOnSameDataDir starts a second server on a data directory
// in use: it must exit instead of sharing the store and keys.
func TestSecondServerOnSameDataDir(t *testing.T) {
	s := startDev(t)

	code, stderr := serveMustFail(t, s, "--dev", "--data-dir", s.DataDir(), "--listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(stderr, "in use") {
		t.Errorf("second ward serve on %s: exit %d, stderr %q; want 1 and \"in use\"", s.DataDir(), code, stderr)
	}
	if status, _ := s.DoWith(t, s.HTTPClient(), "", http.MethodGet, "/v1/health", nil); status != http.StatusOK {
		t.Errorf("first server GET /v1/health after the second start = %d, want 200", status)
	}
}

// TestServeRejectsBadConfig starts ward serve with broken configuration
// files: each start fails with the file and line of the bad value.
func TestServeRejectsBadConfig(t *testing.T) {
	s := startDev(t)
	cases := []struct {
		name, yaml, want string
	}{
		{"invalid duration", "ttl:\n  max: banana\n", "ward.yaml:2"},
		{"unknown key", "environment: dev\nlisten:\n  apii: 127.0.0.1:0\n", "ward.yaml:3"},
		{"max below default", "ttl:\n  default: 2h\n  max: 1h\n", "ward.yaml:3"},
		{"unknown store driver", "store:\n  driver: mongo\n", "ward.yaml:2"},
		{"proxy policy inside serve", "trust_domain: ward.test\npgproxy:\n  listen: 127.0.0.1:0\n" +
			"  upstream: {address: 127.0.0.1:5432, database: shop, user: ward, password: {env: PGPW}}\n" +
			"  rules: rules.yaml\n  policy: {model: model.conf, policy: policy.csv}\n", "ward.yaml:6: pgproxy.policy"},
		{"no trust domain", "environment: prod\n", "ward.yaml:1: trust_domain: missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "ward.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			code, stderr := serveMustFail(t, s, "--config", path,
				"--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0")
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("ward serve --config with %s: exit %d, stderr %q; want 1 naming %s", tc.name, code, stderr, tc.want)
			}
		})
	}
}

// TestBrokenPolicyStopsStart restarts ward on a policy file with a broken
// line: the start must fail naming policy.csv and the line, never serve
// with no policy or a default one.
func TestBrokenPolicyStopsStart(t *testing.T) {
	s := startDev(t)
	s.Stop()
	policyPath := filepath.Join(s.DataDir(), "policy.csv")
	data, err := os.ReadFile(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Count(string(data), "\n") + 1
	writeFileAtomic(t, policyPath, append(data, "p, spiffe://ward.test/ns/shop/sa/web, dev\n"...))

	code, stderr := serveMustFail(t, s, "--dev", "--data-dir", s.DataDir(), "--listen", "127.0.0.1:0")
	want := fmt.Sprintf("policy.csv:%d", line)
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("ward serve with a broken policy: exit %d, stderr %q; want 1 naming %s", code, stderr, want)
	}
}

// TestFailedFirstStartRecovers fails a first start on a policy file that
// the configuration names but that does not exist. A second start with a
// fixed configuration on the same data directory must then serve.
func TestFailedFirstStartRecovers(t *testing.T) {
	s := startDev(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	bad, good := filepath.Join(dir, "bad.yaml"), filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(bad, []byte("trust_domain: ward.test\npolicy: {model: nomodel.conf, file: nopolicy.csv}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, []byte("trust_domain: ward.test\nenvironment: dev\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr := serveMustFail(t, s, "--config", bad, "--data-dir", data, "--listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(stderr, "bad.yaml:2: policy") {
		t.Errorf("first start: exit %d, stderr %q; want 1 naming bad.yaml:2: policy", code, stderr)
	}
	if exited, code, stderr := serveBriefly(t, s, 3*time.Second, "--config", good, "--data-dir", data, "--listen", "127.0.0.1:0"); exited {
		t.Errorf("second start exited with %d: %s; want it serving", code, stderr)
	}
}

// TestPGProxyMissingPolicyNamesLine starts ward pgproxy on a configuration
// whose policy files do not exist: it must exit 1 naming the file, line
// and key of the configuration.
func TestPGProxyMissingPolicyNamesLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "proxy.yaml")
	config := "environment: test\nupstream:\n  address: 127.0.0.1:5432\n  database: x\n  user: ward\n  password: {env: WARD_TEST_PW}\n" +
		"policy: {model: nomodel.conf, policy: nopolicy.csv}\nrules: rules.yaml\n"
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(wardtest.Build(t), "pgproxy", "--config", path)
	cmd.Env = append(os.Environ(), "WARD_TEST_PW=x")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr.String(), "proxy.yaml:7: policy") {
		t.Errorf("ward pgproxy: %v, stderr %q; want exit 1 naming proxy.yaml:7: policy", err, stderr.String())
	}
}
