package e2e

import (
	"bufio"
	"crypto/x509"
	"encoding/pem"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMTLSWithWardCertificates runs openssl s_server and curl with nothing
// but ward-issued certificates, and shows that a client certificate from
// another CA, or none, is rejected.
func TestMTLSWithWardCertificates(t *testing.T) {
	s := startDev(t)
	serverDir := outDir(t, "server")
	clientDir := outDir(t, "client")
	foreignDir := outDir(t, "foreign")

	issueAsAdmin(t, s, "spiffe://ward.test/ns/shop/sa/server", serverDir, "--dns", "localhost", "--ip", "127.0.0.1")
	issueJoined(t, s, "spiffe://ward.test/ns/shop/sa/client", clientDir)
	makeForeignClient(t, foreignDir, "spiffe://ward.test/ns/shop/sa/client")

	port := startSServer(t, serverDir)
	curlTo := func(host, dir string, withCert bool) (string, string, int) {
		args := []string{"-sS", "--tlsv1.3", "--max-time", "10", "--cacert", filepath.Join(serverDir, "bundle.pem")}
		if withCert {
			args = append(args, "--cert", filepath.Join(dir, "cert.pem"), "--key", filepath.Join(dir, "key.pem"))
		}
		return runTool(t, dir, "curl", append(args, "https://"+host+":"+strconv.Itoa(port)+"/")...)
	}

	for _, host := range []string{"localhost", "127.0.0.1"} {
		body, stderr, code := curlTo(host, clientDir, true)
		if code != 0 {
			t.Errorf("curl https://%s with a ward client certificate: exit %d, stderr %q, want 0", host, code, stderr)
		}
		if !strings.Contains(body, "s_server") {
			t.Errorf("curl https://%s body = %q, want the s_server status page", host, body)
		}
	}

	_, stderr, code := curlTo("localhost", foreignDir, true)
	if code == 0 || !strings.Contains(stderr, "alert") {
		t.Errorf("curl with a client certificate from another CA: exit %d, stderr %q; want a TLS alert", code, stderr)
	}
	t.Logf("foreign client certificate: curl exit %d: %s", code, strings.TrimSpace(stderr))

	// ward's API rejects the foreign certificate in the handshake too.
	_, stderr, code = runTool(t, foreignDir, "curl", "-sS", "--tlsv1.3", "--max-time", "10", "--cacert", s.CACertPath(),
		"--cert", "cert.pem", "--key", "key.pem", s.Addr()+"/v1/leases")
	// An HTTP answer, even 401, would exit 0: a non-zero exit means the
	// connection failed, by alert or reset depending on timing.
	if code == 0 {
		t.Errorf("curl GET /v1/leases with a client certificate from another CA: exit 0, want the TLS handshake rejected")
	}
	t.Logf("foreign client certificate at the API: curl exit %d: %s", code, strings.TrimSpace(stderr))

	_, stderr, code = curlTo("localhost", clientDir, false)
	if code == 0 || !strings.Contains(stderr, "alert") {
		t.Errorf("curl without a client certificate: exit %d, stderr %q; want a TLS alert", code, stderr)
	}
	t.Logf("no client certificate: curl exit %d: %s", code, strings.TrimSpace(stderr))
}

// makeForeignClient creates, with openssl, a CA unrelated to ward and a
// client certificate under it that claims a SPIFFE ID in ward's trust
// domain.
func makeForeignClient(t *testing.T, dir, spiffeID string) {
	t.Helper()
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"}
	mustTool(t, dir, "openssl", append([]string{"req", "-x509", "-days", "1", "-subj", "/O=foreign/CN=foreign CA",
		"-keyout", "ca.key", "-out", "ca.pem"}, ec...)...)
	mustTool(t, dir, "openssl", append([]string{"req", "-new", "-subj", "/O=foreign",
		"-keyout", "key.pem", "-out", "client.csr"}, ec...)...)
	ext := "subjectAltName=URI:" + spiffeID + "\nextendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"
	if err := os.WriteFile(filepath.Join(dir, "client.ext"), []byte(ext), 0o600); err != nil {
		t.Fatal(err)
	}
	mustTool(t, dir, "openssl", "x509", "-req", "-days", "1", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
		"-CAcreateserial", "-extfile", "client.ext", "-out", "cert.pem")
}

// startSServer runs openssl s_server on a free port of 127.0.0.1 with the
// ward-issued certificate in dir, requiring a client certificate that
// verifies against dir/bundle.pem. It returns the port once s_server
// accepts connections and stops it when the test ends.
func startSServer(t *testing.T, dir string) int {
	t.Helper()

	// freePort and s_server's bind race with other processes; a retry
	// covers the rare case where the port was taken in between.
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t)
		cmd := exec.Command("openssl", "s_server", "-accept", "127.0.0.1:"+strconv.Itoa(port), "-tls1_3",
			"-Verify", "1", "-verify_return_error", "-CAfile", "bundle.pem",
			"-cert", "cert.pem", "-key", "key.pem", "-www")
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}

		accepted := make(chan bool, 1)
		var drained sync.WaitGroup
		drained.Add(1)
		go func() {
			defer drained.Done()
			sc := bufio.NewScanner(stdout)
			sent := false
			for sc.Scan() {
				if !sent && strings.TrimSpace(sc.Text()) == "ACCEPT" {
					accepted <- true
					sent = true
				}
			}
			if !sent {
				accepted <- false
			}
			_, _ = io.Copy(io.Discard, stdout)
		}()

		select {
		case ok := <-accepted:
			if ok {
				t.Cleanup(func() {
					_ = cmd.Process.Kill()
					drained.Wait()
					_ = cmd.Wait()
				})
				return port
			}
		case <-time.After(10 * time.Second):
		}
		_ = cmd.Process.Kill()
		drained.Wait()
		_ = cmd.Wait()
		t.Logf("openssl s_server on port %d did not start: %s", port, stderr.String())
	}
	t.Fatal("openssl s_server did not start in 3 attempts")
	return 0
}

// TestRevokedClientCertificate revokes a workload's certificate with
// `ward lease revoke`: the CRL lists its serial, openssl rejects it with
// that CRL, and it no longer authenticates to the API.
func TestRevokedClientCertificate(t *testing.T) {
	s := startDev(t)
	dir := outDir(t, "svid")
	issued := issueJoined(t, s, "spiffe://ward.test/ns/shop/sa/web", dir)
	cert := readCert(t, issued.Certificate)

	leasesWithCert := func() (string, int) {
		out := mustTool(t, dir, "curl", "-sS", "--tlsv1.3", "--cacert", s.CACertPath(),
			"--cert", issued.Certificate, "--key", issued.Key, "-w", "\n%{http_code}", s.Addr()+"/v1/leases")
		body, status := curlStatus(t, out)
		return body, status
	}
	body, status := leasesWithCert()
	if status != 200 || !strings.Contains(body, issued.LeaseID) {
		t.Fatalf("curl GET /v1/leases with the client certificate = %d %s, want 200 listing %s", status, body, issued.LeaseID)
	}

	// The workload revokes its own lease with its own certificate.
	env := append(workloadEnv(s), "WARD_CLIENT_CERT="+issued.Certificate, "WARD_CLIENT_KEY="+issued.Key)
	out := mustWard(t, s, env, "lease", "revoke", issued.LeaseID)
	if !strings.Contains(out, "revoked 1") {
		t.Errorf("ward lease revoke printed %q, want \"revoked 1 lease(s)\"", out)
	}

	body, status = leasesWithCert()
	if status != 401 {
		t.Errorf("curl GET /v1/leases with the revoked certificate = %d %s, want 401", status, body)
	}

	crlPEM := mustTool(t, dir, "curl", "-sS", "--fail", "--tlsv1.3", "--cacert", s.CACertPath(), s.Addr()+"/v1/crl")
	if err := os.WriteFile(filepath.Join(dir, "crl.pem"), []byte(crlPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(crlPEM))
	if block == nil || block.Type != "X509 CRL" {
		t.Fatalf("GET /v1/crl = %q, want a PEM X509 CRL", crlPEM)
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	caCert := readCert(t, s.CACertPath())
	if err := crl.CheckSignatureFrom(caCert); err != nil {
		t.Errorf("CRL signature does not verify against the CA: %v", err)
	}
	if !crlLists(crl, cert.SerialNumber) {
		t.Errorf("CRL lists %d serials, not the revoked %x", len(crl.RevokedCertificateEntries), cert.SerialNumber)
	}

	stdout, stderr, code := runTool(t, dir, "openssl", "verify", "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "bundle.pem", "cert.pem")
	if code == 0 || !strings.Contains(stdout+stderr, "certificate revoked") {
		t.Errorf("openssl verify -crl_check: exit %d, output %q; want failure with \"certificate revoked\"", code, stdout+stderr)
	}

	// The revocation survives a restart.
	s.Restart()
	body, status = leasesWithCert()
	if status != 401 {
		t.Errorf("curl GET /v1/leases with the revoked certificate after a restart = %d %s, want 401", status, body)
	}
}

func crlLists(crl *x509.RevocationList, serial *big.Int) bool {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}

// TestCRLNumberIncreases revokes certificates one by one and fetches the
// CRL around each revocation. RFC 5280, section 5.2.3, requires the CRL
// number to increase with each new CRL, so two CRLs with different entries
// never share a number.
func TestCRLNumberIncreases(t *testing.T) {
	s := startDev(t)
	fetch := func() *x509.RevocationList {
		status, body := s.DoWith(t, s.HTTPClient(), "", "GET", "/v1/crl", nil)
		if status != 200 {
			t.Fatalf("GET /v1/crl = %d %s, want 200", status, body)
		}
		block, _ := pem.Decode(body)
		if block == nil {
			t.Fatalf("GET /v1/crl = %q, want PEM", body)
		}
		crl, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return crl
	}

	for _, name := range []string{"a", "b", "c"} {
		issued := issueAsAdmin(t, s, "spiffe://ward.test/ns/shop/sa/"+name, outDir(t, name))
		before := fetch()
		mustWard(t, s, s.Env(), "lease", "revoke", issued.LeaseID)
		after := fetch()

		if len(after.RevokedCertificateEntries) != len(before.RevokedCertificateEntries)+1 {
			t.Fatalf("CRL entries %d after revoking %s, want %d", len(after.RevokedCertificateEntries), issued.Serial, len(before.RevokedCertificateEntries)+1)
		}
		if after.Number.Cmp(before.Number) <= 0 {
			t.Errorf("CRL number %v after revoking %s, %v before: a CRL with new entries must have a higher number (thisUpdate %s and %s)",
				after.Number, issued.Serial, before.Number, before.ThisUpdate.Format(time.RFC3339), after.ThisUpdate.Format(time.RFC3339))
		}
	}
}
