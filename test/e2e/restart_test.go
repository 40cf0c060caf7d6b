package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"ward.dev/ward/test/wardtest"
)

// leaseView is one entry of GET /v1/leases.
type leaseView struct {
	ID     string `json:"id"`
	Serial string `json:"serial"`
	State  string `json:"state"`
}

// listLeases returns the leases under prefix, keyed by lease id, as listed
// for the admin.
func listLeases(t *testing.T, s *wardtest.Server, prefix string) map[string]leaseView {
	t.Helper()
	status, body := s.Do(t, http.MethodGet, "/v1/leases?limit=10000&prefix="+prefix, nil)
	if status != http.StatusOK {
		t.Fatalf("GET /v1/leases = %d %s, want 200", status, body)
	}
	var resp struct {
		Leases []leaseView `json:"leases"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	byID := make(map[string]leaseView, len(resp.Leases))
	for _, l := range resp.Leases {
		byID[l.ID] = l
	}
	return byID
}

// TestRestartKeepsCAAndLeases restarts a server on the same data directory
// and then searches that directory for private keys in clear.
func TestRestartKeepsCAAndLeases(t *testing.T) {
	s := startDev(t)
	first := issueJoined(t, s, "spiffe://ward.test/ns/shop/sa/web", outDir(t, "web"))
	second := issueAsAdmin(t, s, "spiffe://ward.test/ns/shop/sa/orders", outDir(t, "orders"), "--dns", "orders.shop")

	caBefore, err := os.ReadFile(filepath.Join(s.DataDir(), "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	status, bundleBefore := s.Do(t, http.MethodGet, "/v1/bundle", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /v1/bundle = %d, want 200", status)
	}

	s.Restart()

	caAfter, err := os.ReadFile(filepath.Join(s.DataDir(), "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caBefore, caAfter) {
		t.Error("ca.pem changed across a restart, want the same CA")
	}
	status, bundleAfter := s.Do(t, http.MethodGet, "/v1/bundle", nil)
	if status != http.StatusOK || !bytes.Equal(bundleBefore, bundleAfter) {
		t.Errorf("GET /v1/bundle after restart = %d, equal to before: %v; want 200 and the same bundle", status, bytes.Equal(bundleBefore, bundleAfter))
	}

	leases := listLeases(t, s, "x509/")
	for _, issued := range []x509Issued{first, second} {
		l, ok := leases[issued.LeaseID]
		if !ok {
			t.Errorf("lease %s missing after restart", issued.LeaseID)
			continue
		}
		if l.Serial != issued.Serial || l.State != "active" {
			t.Errorf("lease %s after restart: serial %s, state %s; want %s, active", issued.LeaseID, l.Serial, l.State, issued.Serial)
		}
	}

	// Certificates issued before the restart still verify against the
	// bundle served after it.
	dir := filepath.Dir(first.Certificate)
	if err := os.WriteFile(filepath.Join(dir, "bundle-after.pem"), bundleAfter, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := mustTool(t, dir, "openssl", "verify", "-CAfile", "bundle-after.pem", "cert.pem"); !bytes.Contains([]byte(out), []byte("cert.pem: OK")) {
		t.Errorf("openssl verify of a pre-restart certificate printed %q, want OK", out)
	}

	checkNoKeyInClear(t, s.DataDir())
}

// checkNoKeyInClear fails the test if a file under dir contains a PEM
// private key header or any private key the tests recorded, as DER or
// base64.
func checkNoKeyInClear(t *testing.T, dir string) {
	t.Helper()

	run.mu.Lock()
	secrets := append([]secret(nil), run.secrets...)
	run.mu.Unlock()

	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte("PRIVATE KEY")) {
			t.Errorf("%s contains a \"PRIVATE KEY\" PEM header", path)
		}
		for _, sec := range secrets {
			if bytes.Contains(data, sec.value) {
				t.Errorf("%s contains %s", path, sec.name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no files under %s", dir)
	}
}

// TestKill9DuringIssuanceBurst kills the server with SIGKILL while 200
// certificate requests are in flight. Every certificate a client received
// must have its lease in the store after the restart: a lease is written
// durably before the certificate is returned.
func TestKill9DuringIssuanceBurst(t *testing.T) {
	const (
		requests  = 200
		workers   = 16
		killAfter = 40 // successful responses before the kill
	)
	s := startDev(t)

	csrs := make([][]byte, requests)
	for i := range csrs {
		csrs[i] = newCSR(t, "")
	}

	var (
		mu        sync.Mutex
		received  []issuedCert
		failed    int
		killOnce  sync.Once
		killed    = make(chan struct{})
		next      = make(chan int)
		wg        sync.WaitGroup
		token     = s.AdminToken()
		client    = s.HTTPClient()
		burstDone = make(chan struct{})
	)
	client.Timeout = 10 * time.Second

	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				res, ok := issueRaw(s, client, token, i, csrs[i])
				mu.Lock()
				if ok {
					received = append(received, res)
				} else {
					failed++
				}
				n := len(received)
				mu.Unlock()
				if n >= killAfter {
					killOnce.Do(func() {
						s.Kill9()
						close(killed)
					})
				}
			}
		}()
	}
	go func() {
		defer close(burstDone)
		for i := 0; i < requests; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
	}()

	select {
	case <-burstDone:
	case <-time.After(2 * time.Minute):
		t.Fatal("burst of 200 requests did not finish within 2 minutes")
	}
	select {
	case <-killed:
	default:
		t.Fatalf("only %d of %d requests succeeded, the kill at %d never happened", len(received), requests, killAfter)
	}
	t.Logf("%d certificates received, %d requests failed around the kill", len(received), failed)
	if failed == 0 {
		t.Errorf("all %d requests succeeded: the kill came after the burst and proves nothing", requests)
	}

	s.Restart()
	leases := listLeases(t, s, "x509/spiffe://ward.test/ns/shop/sa/burst-")
	for _, r := range received {
		l, ok := leases[r.leaseID]
		if !ok {
			t.Errorf("certificate with serial %s was returned, but its lease %s is missing after the restart", r.serial, r.leaseID)
			continue
		}
		if l.Serial != r.serial {
			t.Errorf("lease %s serial = %s, want %s as returned", r.leaseID, l.Serial, r.serial)
		}
		if cert := parseCertPEM(t, []byte(r.certificate)); fmt.Sprintf("%x", cert.SerialNumber) != r.serial {
			t.Errorf("certificate serial = %x, response serial field = %s, want equal", cert.SerialNumber, r.serial)
		}
	}

	// The audit line is written before the response, so each received
	// certificate has an allow line with its lease id.
	audited := make(map[string]bool)
	for _, r := range auditRecords(t, s) {
		if r.Decision == "allow" && r.LeaseID != "" {
			audited[r.LeaseID] = true
		}
	}
	for _, r := range received {
		if !audited[r.leaseID] {
			t.Errorf("certificate with lease %s was returned, but the audit log has no allow line for it", r.leaseID)
		}
	}

	if status, body := s.Do(t, http.MethodPost, "/v1/issue/x509", map[string]string{
		"csr": string(newCSR(t, "")), "spiffe_id": "spiffe://ward.test/ns/shop/sa/after-crash",
	}); status != http.StatusOK {
		t.Errorf("POST /v1/issue/x509 after the crash and restart = %d %s, want 200", status, body)
	}
}

// issuedCert is a certificate a client received in a 200 response.
type issuedCert struct {
	leaseID, serial, certificate string
}

// issueRaw sends one issuance as the admin and reports whether a 200
// response with a lease id arrived.
func issueRaw(s *wardtest.Server, client *http.Client, token string, i int, csr []byte) (result issuedCert, ok bool) {
	body, err := json.Marshal(map[string]string{
		"csr": string(csr), "spiffe_id": fmt.Sprintf("spiffe://ward.test/ns/shop/sa/burst-%d", i), "ttl": "10m",
	})
	if err != nil {
		return result, false
	}
	req, err := http.NewRequest(http.MethodPost, s.Addr()+"/v1/issue/x509", bytes.NewReader(body))
	if err != nil {
		return result, false
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return result, false
	}
	defer resp.Body.Close()
	var out struct {
		Certificate string `json:"certificate"`
		Serial      string `json:"serial"`
		LeaseID     string `json:"lease_id"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil || out.LeaseID == "" {
		return result, false
	}
	result.leaseID, result.serial, result.certificate = out.LeaseID, out.Serial, out.Certificate
	return result, true
}
