package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ward.dev/ward/test/wardtest"
)

// TestPolicyDenyThenReload shows a join token for a SPIFFE ID outside the
// policy being rejected with 403 and a deny audit line, then accepted after
// an allow line and `ward policy reload`, without a restart.
func TestPolicyDenyThenReload(t *testing.T) {
	s := startDev(t)
	const id = "spiffe://ward.test/ns/other/sa/x"
	pid := s.Pid()
	token := createJoinToken(t, s, id, "10m")

	status, body := s.DoWith(t, s.HTTPClient(), "", http.MethodPost, "/v1/auth/join",
		map[string]string{"join_token": token, "csr": string(newCSR(t, id))})
	msg := wardtest.ErrorMessage(body)
	if status != http.StatusForbidden {
		t.Errorf("POST /v1/auth/join for %s = %d %s, want 403", id, status, body)
	}
	if !strings.Contains(msg, id+" may not issue x509/"+id) {
		t.Errorf("POST /v1/auth/join error = %q, want it to say %s may not issue x509/%s", msg, id, id)
	}

	dir := outDir(t, "svid")
	_, stderr, code := s.RunEnv(t, workloadEnv(s), "issue", "x509", "--join-token", token, "--out", dir)
	if code != 1 {
		t.Errorf("ward issue x509 for %s before the policy change: exit %d, want 1", id, code)
	}
	if strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "may not issue") {
		t.Errorf("ward issue x509 stderr = %q, want one line saying \"may not issue\"", stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "key.pem")); err == nil {
		t.Error("a rejected ward issue x509 wrote key.pem")
	}

	denies := 0
	for _, r := range auditRecords(t, s) {
		if r.Decision == "deny" && r.Caller == id && r.Action == "join" && strings.Contains(r.Reason, "may not issue") {
			denies++
		}
	}
	if denies != 2 {
		t.Errorf("audit log has %d deny lines for %s's join, want 2 (API and CLI)", denies, id)
	}

	policyPath := filepath.Join(s.DataDir(), "policy.csv")
	appendPolicy(t, policyPath, "p, "+id+", dev, x509/self, issue, allow")
	out := mustWard(t, s, s.Env(), "policy", "reload")
	if !strings.Contains(out, "policy reloaded, version 2") {
		t.Errorf("ward policy reload printed %q, want \"policy reloaded, version 2\"", out)
	}

	out = mustWard(t, s, workloadEnv(s), "issue", "x509", "--join-token", token, "--out", dir)
	addKeyFileSecret(t, filepath.Join(dir, "key.pem"))
	if !strings.Contains(out, id) {
		t.Errorf("ward issue x509 after reload printed %q, want %s", out, id)
	}
	if verify := mustTool(t, dir, "openssl", "verify", "-CAfile", "bundle.pem", "cert.pem"); strings.TrimSpace(verify) != "cert.pem: OK" {
		t.Errorf("openssl verify printed %q, want \"cert.pem: OK\"", verify)
	}
	if s.Pid() != pid {
		t.Errorf("server pid changed from %d to %d, want no restart", pid, s.Pid())
	}
}

// TestPolicyReloadRejectsBrokenEdit shows that a broken policy file is
// rejected with its file:line by `ward policy reload`, `ward policy lint`
// and SIGHUP, and that the previous policy stays in force each time.
func TestPolicyReloadRejectsBrokenEdit(t *testing.T) {
	s := startDev(t)
	const allowed = "spiffe://ward.test/ns/other/sa/x"
	const viaHUP = "spiffe://ward.test/ns/hup/sa/y"
	policyPath := filepath.Join(s.DataDir(), "policy.csv")

	appendPolicy(t, policyPath, "p, "+allowed+", dev, x509/self, issue, allow")
	mustWard(t, s, s.Env(), "policy", "reload")
	good, err := os.ReadFile(policyPath)
	if err != nil {
		t.Fatal(err)
	}

	brokenLine := bytes.Count(good, []byte("\n")) + 1
	writeFileAtomic(t, policyPath, append(append([]byte(nil), good...), "p, spiffe://ward.test/ns/broken\n"...))
	wantSource := fmt.Sprintf("policy.csv:%d", brokenLine)

	_, stderr, code := s.Run(t, "policy", "reload")
	if code != 1 || !strings.Contains(stderr, wantSource) {
		t.Errorf("ward policy reload of a broken policy: exit %d, stderr %q; want 1 naming %s", code, stderr, wantSource)
	}
	stdout, _, code := s.Run(t, "policy", "lint", policyPath)
	if code != 1 || !strings.Contains(stdout, wantSource) {
		t.Errorf("ward policy lint of a broken policy: exit %d, stdout %q; want 1 naming %s", code, stdout, wantSource)
	}
	expectDecision(t, s, allowed, "allow")

	// SIGHUP with a repaired policy that also allows viaHUP.
	expectDecision(t, s, viaHUP, "deny")
	writeFileAtomic(t, policyPath, append(append([]byte(nil), good...), "p, "+viaHUP+", dev, x509/self, issue, allow\n"...))
	s.Signal(syscall.SIGHUP)
	if !waitFor(10*time.Second, func() bool { return decision(t, s, viaHUP) == "allow" }) {
		t.Fatalf("policy check for %s after SIGHUP = %s, want allow within 10s", viaHUP, decision(t, s, viaHUP))
	}
	expectDecision(t, s, allowed, "allow")

	// SIGHUP with a broken policy: the server logs the rejection and keeps
	// the policy it has.
	fixed, err := os.ReadFile(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	writeFileAtomic(t, policyPath, append(fixed, "g, only-two-fields\n"...))
	s.Signal(syscall.SIGHUP)
	logged := waitFor(10*time.Second, func() bool {
		log, err := os.ReadFile(s.LogPath())
		return err == nil && bytes.Contains(log, []byte("policy reload rejected"))
	})
	if !logged {
		t.Errorf("%s has no \"policy reload rejected\" line 10s after SIGHUP with a broken policy", s.LogPath())
	}
	expectDecision(t, s, viaHUP, "allow")
	expectDecision(t, s, allowed, "allow")
}

// appendPolicy appends one line to the policy file, atomically.
func appendPolicy(t *testing.T, path, line string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	writeFileAtomic(t, path, append(data, line+"\n"...))
}

// decision returns the server's decision (allow or deny) on id issuing its
// own certificate.
func decision(t *testing.T, s *wardtest.Server, id string) string {
	t.Helper()
	stdout, stderr, code := s.Run(t, "policy", "check", id, "dev", "x509/"+id, "issue")
	fields := strings.Fields(stdout)
	if len(fields) == 0 || (code != 0 && code != 1) {
		t.Fatalf("ward policy check %s: exit %d, stdout %q, stderr %q", id, code, stdout, stderr)
	}
	if (fields[0] == "allow") != (code == 0) {
		t.Errorf("ward policy check %s printed %q with exit %d, want exit 0 exactly on allow", id, fields[0], code)
	}
	return fields[0]
}

func expectDecision(t *testing.T, s *wardtest.Server, id, want string) {
	t.Helper()
	if got := decision(t, s, id); got != want {
		t.Errorf("ward policy check %s dev x509/%s issue = %s, want %s", id, id, got, want)
	}
}

// newCSR makes a P-256 CSR for id (empty: no URI SAN) in Go and records
// its key as a secret.
func newCSR(t *testing.T, id string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	if id != "" {
		u, err := url.Parse(id)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	return signCSR(t, tmpl)
}

// newCSRWithDNS makes a P-256 CSR without a URI SAN that requests a DNS
// SAN.
func newCSRWithDNS(t *testing.T, dnsName string) []byte {
	t.Helper()
	return signCSR(t, &x509.CertificateRequest{DNSNames: []string{dnsName}})
}

func signCSR(t *testing.T, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	addKeySecret("Go CSR key", der)

	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})
}
