package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/internal/config"
)

// testServer is a ward API server on a loopback port with its admin client.
type testServer struct {
	srv   *Server
	addr  string
	token string
	http  *http.Client
}

func startServer(tb testing.TB, edit func(*config.Config)) *testServer {
	tb.Helper()
	cfg := config.Defaults()
	cfg.DataDir = tb.TempDir()
	if edit != nil {
		edit(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := Open(cfg, log)
	if err != nil {
		tb.Fatalf("Open = %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})

	token, err := os.ReadFile(filepath.Join(cfg.DataDir, fileAdminToken))
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CAPEM())
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
	}
	return &testServer{
		srv:   srv,
		addr:  "https://" + ln.Addr().String(),
		token: strings.TrimSpace(string(token)),
		http:  &http.Client{Transport: transport, Timeout: 30 * time.Second},
	}
}

// call sends a JSON request with the admin token and decodes the response.
func (ts *testServer) call(tb testing.TB, method, path string, body any, out any) int {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, ts.addr+path, rd)
	if ts.token != "" {
		req.Header.Set("Authorization", "Bearer "+ts.token)
	}
	resp, err := ts.http.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			tb.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode
}

func newCSR(tb testing.TB, uri string) string {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{}
	if uri != "" {
		tmpl.URIs = []*url.URL{mustSPIFFE(uri)}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func TestIssueX509WritesLeaseAndAudit(t *testing.T) {
	ts := startServer(t, nil)
	var resp x509Response
	code := ts.call(t, "POST", "/v1/issue/x509", map[string]any{
		"csr": newCSR(t, ""), "spiffe_id": "spiffe://ward.test/ns/shop/sa/web", "ttl": "10m",
	}, &resp)
	if code != http.StatusOK {
		t.Fatalf("issue x509 status = %d, want 200", code)
	}
	block, _ := pem.Decode([]byte(resp.Certificate))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if got := cert.URIs[0].String(); got != "spiffe://ward.test/ns/shop/sa/web" {
		t.Errorf("URI SAN = %q, want the requested SPIFFE ID", got)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); life > 10*time.Minute {
		t.Errorf("lifetime = %s, want at most 10m", life)
	}

	l, err := ts.srv.leases.Get(context.Background(), resp.LeaseID)
	if err != nil {
		t.Fatalf("lease %s: %v", resp.LeaseID, err)
	}
	if l.Serial != resp.Serial {
		t.Errorf("lease serial = %s, want %s", l.Serial, resp.Serial)
	}
	audit, _ := os.ReadFile(ts.srv.cfg.Audit.Path)
	if !strings.Contains(string(audit), resp.LeaseID) {
		t.Errorf("audit log has no line with lease %s", resp.LeaseID)
	}
}

func TestIssueX509Rejections(t *testing.T) {
	ts := startServer(t, nil)
	tests := []struct {
		name string
		body map[string]any
		want int
		msg  string
	}{
		{"missing csr", map[string]any{"ttl": "1m"}, 400, "missing csr"},
		{"garbage csr", map[string]any{"csr": "not a csr"}, 400, "invalid CSR"},
		{"ttl above max", map[string]any{"csr": newCSR(t, ""), "ttl": "25h"}, 400, "exceeds the maximum"},
		{"foreign trust domain", map[string]any{"csr": newCSR(t, ""), "spiffe_id": "spiffe://evil.test/x"}, 400, "outside trust domain"},
		{"csr uri mismatch", map[string]any{"csr": newCSR(t, "spiffe://ward.test/a"), "spiffe_id": "spiffe://ward.test/b"}, 400, "does not match"},
		{"unknown field", map[string]any{"csr": newCSR(t, ""), "bogus": 1}, 400, "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp map[string]string
			code := ts.call(t, "POST", "/v1/issue/x509", tt.body, &resp)
			if code != tt.want {
				t.Errorf("status = %d, want %d (%s)", code, tt.want, resp["error"])
			}
			if !strings.Contains(resp["error"], tt.msg) {
				t.Errorf("error = %q, want it to contain %q", resp["error"], tt.msg)
			}
		})
	}
}

func TestAuditFailureReturnsNoCredential(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.Audit.Path = "/dev/full" })
	var resp map[string]any
	code := ts.call(t, "POST", "/v1/issue/x509", map[string]any{"csr": newCSR(t, "")}, &resp)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", code)
	}
	if _, ok := resp["certificate"]; ok {
		t.Error("response carries a certificate although the audit write failed")
	}
}

// insecureClient skips certificate checks, for the sealed listener whose
// certificate is self-signed.
func insecureClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}, //nolint:gosec // test of the sealed listener
	}}
}

// workloadClient issues a certificate for id and returns a client that
// authenticates with it instead of the admin token.
func (ts *testServer) workloadClient(tb testing.TB, id string) *testServer {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	var resp x509Response
	if code := ts.call(tb, "POST", "/v1/issue/x509", map[string]any{"csr": csr, "spiffe_id": id}, &resp); code != http.StatusOK {
		tb.Fatalf("issue workload certificate = %d", code)
	}
	block, _ := pem.Decode([]byte(resp.Certificate))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ts.srv.CAPEM())
	transport := &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{block.Bytes}, PrivateKey: key}},
	}}
	return &testServer{srv: ts.srv, addr: ts.addr, http: &http.Client{Transport: transport, Timeout: 30 * time.Second}}
}
