package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/test/wardtest"
)

// toolTimeout bounds every openssl and curl run.
const toolTimeout = 30 * time.Second

// runTool runs an external program (openssl, curl) in dir and returns its
// output and exit code. The test fails only if the program cannot run.
func runTool(t *testing.T, dir, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()

	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errOut.String(), 0
	case errors.As(err, &exit) && ctx.Err() == nil:
		return out.String(), errOut.String(), exit.ExitCode()
	default:
		t.Fatalf("%s %s: %v (stderr: %s)", name, strings.Join(args, " "), err, errOut.String())
		return "", "", -1
	}
}

// mustTool is runTool that fails the test on a non-zero exit.
func mustTool(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	stdout, stderr, code := runTool(t, dir, name, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d, stderr: %s", name, strings.Join(args, " "), code, stderr)
	}
	return stdout
}

// mustWard runs the ward CLI with env and fails the test on a non-zero exit.
func mustWard(t *testing.T, s *wardtest.Server, env []string, args ...string) string {
	t.Helper()
	stdout, stderr, code := s.RunEnv(t, env, args...)
	if code != 0 {
		t.Fatalf("ward %s: exit %d, stderr: %s", strings.Join(args, " "), code, stderr)
	}
	return stdout
}

// workloadEnv is the environment of a workload that holds no admin token.
func workloadEnv(s *wardtest.Server) []string {
	var env []string
	for _, kv := range s.Env() {
		if !strings.HasPrefix(kv, "WARD_TOKEN=") {
			env = append(env, kv)
		}
	}
	return env
}

// x509Issued is the output of `ward issue x509 --output json`.
type x509Issued struct {
	SPIFFEID    string `json:"spiffe_id"`
	Serial      string `json:"serial"`
	LeaseID     string `json:"lease_id"`
	Key         string `json:"key"`
	Certificate string `json:"certificate"`
	Bundle      string `json:"bundle"`
}

// createJoinToken runs `ward token create` as the admin and records the
// token as a secret.
func createJoinToken(t *testing.T, s *wardtest.Server, spiffeID, ttl string) string {
	t.Helper()
	token := strings.TrimSpace(mustWard(t, s, s.Env(), "token", "create", "--spiffe-id", spiffeID, "--ttl", ttl))
	if !strings.HasPrefix(token, "wardjoin.") {
		t.Fatalf("ward token create printed %q, want a token starting with wardjoin.", token)
	}
	addSecret("join token for "+spiffeID, []byte(token))
	return token
}

// issueJoined obtains a certificate with a new join token, as a workload
// without the admin token does, and returns the written files.
func issueJoined(t *testing.T, s *wardtest.Server, spiffeID, outDir string) x509Issued {
	t.Helper()
	token := createJoinToken(t, s, spiffeID, "10m")
	out := mustWard(t, s, workloadEnv(s), "issue", "x509", "--join-token", token, "--out", outDir, "--output", "json")
	return parseIssued(t, out)
}

// issueAsAdmin obtains a certificate with the admin token, with extra flags
// such as --dns.
func issueAsAdmin(t *testing.T, s *wardtest.Server, spiffeID, outDir string, flags ...string) x509Issued {
	t.Helper()
	args := append([]string{"issue", "x509", "--spiffe-id", spiffeID, "--out", outDir, "--output", "json"}, flags...)
	return parseIssued(t, mustWard(t, s, s.Env(), args...))
}

func parseIssued(t *testing.T, out string) x509Issued {
	t.Helper()
	var r x509Issued
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("ward issue x509 --output json printed %q: %v", out, err)
	}
	addKeyFileSecret(t, r.Key)
	return r
}

// addKeyFileSecret records a PEM private key in every form a leak could
// take: the PEM text, its first base64 line, the DER and its base64.
func addKeyFileSecret(t *testing.T, path string) {
	t.Helper()
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	addKeySecret("private key "+path, block.Bytes)
	addSecret("private key PEM "+path, pemBytes)
}

// addKeySecret records a DER private key and its base64 forms.
func addKeySecret(name string, der []byte) {
	addSecret(name+" (DER)", der)
	b64 := base64.StdEncoding.EncodeToString(der)
	addSecret(name+" (base64)", []byte(b64))
	addSecret(name+" (base64, first PEM line)", []byte(b64[:min(64, len(b64))]))
	addSecret(name+" (base64url)", []byte(base64.RawURLEncoding.EncodeToString(der)))
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseCertPEM(t, data)
}

func parseCertPEM(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("no PEM certificate in %q", data)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// auditRecord is the part of an audit line the tests check.
type auditRecord struct {
	Caller   string            `json:"caller"`
	Action   string            `json:"action"`
	Object   string            `json:"object"`
	Decision string            `json:"decision"`
	Reason   string            `json:"reason"`
	LeaseID  string            `json:"lease_id"`
	HMACs    map[string]string `json:"hmac"`
}

// auditRecords reads the audit log. A line that is not a JSON object fails
// the test.
func auditRecords(t *testing.T, s *wardtest.Server) []auditRecord {
	t.Helper()
	f, err := os.Open(s.AuditPath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	var records []auditRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var r auditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s:%d: invalid JSON line: %v", s.AuditPath(), n, err)
		}
		records = append(records, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return records
}

// writeFileAtomic replaces path through a temporary file and a rename, so
// the server never reads a half-written policy.
func writeFileAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp-e2e"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond every 20ms until it returns true or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// outDir returns a directory for issued files outside the data directory.
func outDir(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// bearerHeaderFile writes "Authorization: Bearer TOKEN" to a 0600 file for
// curl's -H @file, so the token does not appear in the process list.
func bearerHeaderFile(t *testing.T, s *wardtest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.header")
	if err := os.WriteFile(path, []byte("Authorization: Bearer "+s.AdminToken()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// curlStatus splits output of curl -w '\n%{http_code}' into body and status.
func curlStatus(t *testing.T, out string) (body string, status int) {
	t.Helper()
	i := strings.LastIndexByte(out, '\n')
	if i < 0 {
		t.Fatalf("curl output %q has no status line", out)
	}
	status, err := strconv.Atoi(strings.TrimSpace(out[i+1:]))
	if err != nil {
		t.Fatalf("curl output %q: invalid status: %v", out, err)
	}
	return out[:i], status
}

// postJSON sends body as JSON with an optional bearer token. Unlike
// wardtest's Do it returns transport errors, so goroutines can call it.
func postJSON(client *http.Client, url, token string, body any) (status int, respBody []byte, err error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	respBody, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, respBody, err
}
