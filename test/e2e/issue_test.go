package e2e

import (
	"crypto/x509"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestIssueX509WithJoinToken follows the first-certificate path of a
// workload: the admin creates a join token, the workload exchanges it with
// `ward issue x509`, and openssl verifies the result.
func TestIssueX509WithJoinToken(t *testing.T) {
	s := startDev(t)
	const id = "spiffe://ward.test/ns/shop/sa/web"
	dir := outDir(t, "svid")

	token := createJoinToken(t, s, id, "10m")
	stdout := mustWard(t, s, workloadEnv(s), "issue", "x509", "--join-token", token, "--ttl", "10m", "--out", dir)
	if !strings.Contains(stdout, id) {
		t.Errorf("ward issue x509 output %q does not name %s", stdout, id)
	}
	addKeyFileSecret(t, filepath.Join(dir, "key.pem"))

	out := mustTool(t, dir, "openssl", "verify", "-CAfile", "bundle.pem", "cert.pem")
	if strings.TrimSpace(out) != "cert.pem: OK" {
		t.Errorf("openssl verify printed %q, want \"cert.pem: OK\"", out)
	}

	text := mustTool(t, dir, "openssl", "x509", "-in", "cert.pem", "-noout", "-ext", "subjectAltName,basicConstraints")
	if !strings.Contains(text, "URI:"+id) {
		t.Errorf("openssl x509 -ext subjectAltName = %q, want URI:%s", text, id)
	}
	if !strings.Contains(text, "CA:FALSE") {
		t.Errorf("openssl x509 -ext basicConstraints = %q, want CA:FALSE", text)
	}

	cert := readCert(t, filepath.Join(dir, "cert.pem"))
	if len(cert.URIs) != 1 || cert.URIs[0].String() != id {
		t.Errorf("certificate URI SANs = %v, want exactly [%s]", cert.URIs, id)
	}
	if lifetime := cert.NotAfter.Sub(cert.NotBefore); lifetime > 10*time.Minute || lifetime <= 0 {
		t.Errorf("certificate NotAfter-NotBefore = %s, want at most the requested 10m", lifetime)
	}
	if cert.IsCA {
		t.Error("certificate IsCA = true, want a leaf")
	}

	info, err := os.Stat(filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("key.pem mode = %o, want 600", mode)
	}

	keyPub := mustTool(t, dir, "openssl", "pkey", "-in", "key.pem", "-pubout")
	certPub := mustTool(t, dir, "openssl", "x509", "-in", "cert.pem", "-noout", "-pubkey")
	if keyPub != certPub {
		t.Errorf("public key of key.pem %q differs from cert.pem's %q", keyPub, certPub)
	}

	// The audit log carries the token only as an HMAC, the same one in the
	// create-token and join records, so an auditor can link the two.
	var created, joined string
	for _, r := range auditRecords(t, s) {
		switch {
		case r.Action == "create-token" && r.Object == "token/"+id:
			created = r.HMACs["join_token"]
		case r.Action == "join" && r.Decision == "allow":
			joined = r.HMACs["join_token"]
		}
	}
	if created == "" || created != joined {
		t.Errorf("audit HMAC of the join token: create-token %q, join %q; want equal and non-empty", created, joined)
	}

	// The token is spent: a second exchange is rejected.
	_, stderr, code := s.RunEnv(t, workloadEnv(s), "issue", "x509", "--join-token", token, "--out", outDir(t, "again"))
	if code != 1 || !strings.Contains(stderr, "join token invalid, expired or already used") {
		t.Errorf("second ward issue x509 with one token: exit %d, stderr %q; want 1 and \"already used\"", code, stderr)
	}
}

// TestIssueX509OpenSSLCSRWithCurl sends a CSR made by openssl req to the
// API with curl, authenticated by the admin token.
func TestIssueX509OpenSSLCSRWithCurl(t *testing.T) {
	s := startDev(t)
	const id = "spiffe://ward.test/ns/shop/sa/curl"
	dir := outDir(t, "curl")

	mustTool(t, dir, "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-keyout", "key.pem", "-out", "csr.pem", "-subj", "/O=e2e",
		"-addext", "subjectAltName=URI:"+id)
	addKeyFileSecret(t, filepath.Join(dir, "key.pem"))
	csr, err := os.ReadFile(filepath.Join(dir, "csr.pem"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(map[string]any{"csr": string(csr), "spiffe_id": id, "ttl": "5m"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "body.json"), body, 0o600); err != nil {
		t.Fatal(err)
	}

	out := mustTool(t, dir, "curl", "-sS", "--tlsv1.3", "--cacert", s.CACertPath(),
		"-H", "@"+bearerHeaderFile(t, s), "-H", "Content-Type: application/json",
		"--data-binary", "@body.json", "-w", "\n%{http_code}", s.Addr()+"/v1/issue/x509")
	respBody, status := curlStatus(t, out)
	if status != 200 {
		t.Fatalf("curl POST /v1/issue/x509 = %d %s, want 200", status, respBody)
	}
	var resp struct {
		SPIFFEID    string `json:"spiffe_id"`
		Certificate string `json:"certificate"`
		Bundle      string `json:"bundle"`
		Serial      string `json:"serial"`
		LeaseID     string `json:"lease_id"`
	}
	if err := json.Unmarshal([]byte(respBody), &resp); err != nil {
		t.Fatalf("response %q: %v", respBody, err)
	}
	if resp.SPIFFEID != id || resp.LeaseID == "" || resp.Serial == "" {
		t.Errorf("response spiffe_id %q, lease_id %q, serial %q; want %s and both set", resp.SPIFFEID, resp.LeaseID, resp.Serial, id)
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), []byte(resp.Certificate), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bundle.pem"), []byte(resp.Bundle), 0o644); err != nil {
		t.Fatal(err)
	}

	verify := mustTool(t, dir, "openssl", "verify", "-CAfile", "bundle.pem", "cert.pem")
	if strings.TrimSpace(verify) != "cert.pem: OK" {
		t.Errorf("openssl verify printed %q, want \"cert.pem: OK\"", verify)
	}
	keyPub := mustTool(t, dir, "openssl", "pkey", "-in", "key.pem", "-pubout")
	certPub := mustTool(t, dir, "openssl", "x509", "-in", "cert.pem", "-noout", "-pubkey")
	if keyPub != certPub {
		t.Errorf("certificate public key %q differs from the openssl key %q", certPub, keyPub)
	}

	cert := readCert(t, filepath.Join(dir, "cert.pem"))
	want, _ := url.Parse(id)
	if len(cert.URIs) != 1 || *cert.URIs[0] != *want {
		t.Errorf("certificate URI SANs = %v, want [%s]", cert.URIs, id)
	}
	if got := cert.NotAfter.Sub(cert.NotBefore); got > 5*time.Minute {
		t.Errorf("certificate lifetime = %s, want at most 5m", got)
	}
	if !hasExtKeyUsage(cert, x509.ExtKeyUsageClientAuth) || !hasExtKeyUsage(cert, x509.ExtKeyUsageServerAuth) {
		t.Errorf("certificate ExtKeyUsage = %v, want serverAuth and clientAuth", cert.ExtKeyUsage)
	}
}

func hasExtKeyUsage(cert *x509.Certificate, usage x509.ExtKeyUsage) bool {
	for _, u := range cert.ExtKeyUsage {
		if u == usage {
			return true
		}
	}
	return false
}

// TestCSRExtensionsNotCopied sends an openssl CSR that requests CA key
// usages and a code-signing EKU: ward must issue a plain leaf and ignore
// what the CSR asked for beyond the key and SANs.
func TestCSRExtensionsNotCopied(t *testing.T) {
	s := startDev(t)
	const id = "spiffe://ward.test/ns/shop/sa/web"
	dir := outDir(t, "ext")

	mustTool(t, dir, "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "key.pem", "-out", "csr.pem", "-subj", "/CN=ward root CA ward.test/O=ward",
		"-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
		"-addext", "extendedKeyUsage=codeSigning,emailProtection",
		"-addext", "subjectAltName=URI:"+id)
	addKeyFileSecret(t, filepath.Join(dir, "key.pem"))
	csr, err := os.ReadFile(filepath.Join(dir, "csr.pem"))
	if err != nil {
		t.Fatal(err)
	}

	status, body := s.Do(t, "POST", "/v1/issue/x509", map[string]string{"csr": string(csr), "spiffe_id": id})
	if status != 200 {
		// Rejecting such a CSR is as safe as ignoring its extensions.
		t.Logf("POST /v1/issue/x509 with CA key usages in the CSR = %d %s", status, body)
		return
	}
	var resp struct {
		Certificate string `json:"certificate"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	cert := parseCertPEM(t, []byte(resp.Certificate))
	if cert.IsCA || cert.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		t.Errorf("certificate IsCA %v, KeyUsage %b; want a leaf without certSign or cRLSign", cert.IsCA, cert.KeyUsage)
	}
	for _, u := range cert.ExtKeyUsage {
		if u != x509.ExtKeyUsageServerAuth && u != x509.ExtKeyUsageClientAuth {
			t.Errorf("certificate ExtKeyUsage contains %v, want only serverAuth and clientAuth", u)
		}
	}
	if cert.Subject.CommonName == "ward root CA ward.test" {
		t.Errorf("certificate subject %q copies the CSR's subject, which imitates the CA's", cert.Subject)
	}
}
