package e2e

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/test/wardtest"
)

// TestBadInputRejected sends malformed, oversized, unauthenticated and
// replayed requests. Each gets a 4xx whose message names the problem, and
// the server keeps serving.
func TestBadInputRejected(t *testing.T) {
	s := startDev(t)
	const id = "spiffe://ward.test/ns/shop/sa/web"
	admin := s.AdminToken()
	client := s.HTTPClient()

	goodCSR := string(newCSR(t, id))
	caCSR := opensslCACSR(t, id)

	// This token expires in 1s. The wait for it comes after the other
	// setup, so little time is spent sleeping.
	expiring := createJoinTokenAPI(t, s, id, "1s")
	spent := createJoinTokenAPI(t, s, id, "10m")
	if status, body := s.DoWith(t, client, "", http.MethodPost, "/v1/auth/join",
		map[string]string{"join_token": spent.token, "csr": goodCSR}); status != http.StatusOK {
		t.Fatalf("first use of a join token = %d %s, want 200", status, body)
	}

	huge := bytes.Repeat([]byte("a"), 10<<20)
	copy(huge, `{"csr":"`)

	type request struct {
		method, path string
		token        string
		body         any
		contentType  string // "" sends application/json
	}
	issue := func(body any) request {
		return request{http.MethodPost, "/v1/issue/x509", admin, body, ""}
	}
	send := func(t *testing.T, r request) (int, []byte) {
		if r.contentType == "" {
			return s.DoWith(t, client, r.token, r.method, r.path, r.body)
		}
		req, err := http.NewRequest(r.method, s.Addr()+r.path, strings.NewReader(r.body.(string)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", r.contentType)
		req.Header.Set("Authorization", "Bearer "+r.token)
		return wardtest.Send(t, client, req)
	}
	cases := []struct {
		name       string
		req        request
		wantStatus int
		wantMsg    string
	}{
		{"malformed CSR", issue(map[string]string{"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "spiffe_id": id}),
			http.StatusBadRequest, "invalid CSR"},
		{"CSR not PEM", issue(map[string]string{"csr": "not a csr", "spiffe_id": id}),
			http.StatusBadRequest, "CSR"},
		{"missing CSR", issue(map[string]string{"spiffe_id": id}),
			http.StatusBadRequest, "missing csr"},
		{"CSR with a bad signature", issue(map[string]string{"csr": badSignatureCSR(t, id), "spiffe_id": id}),
			http.StatusBadRequest, "signature"},
		{"CSR with a 1024-bit RSA key", issue(map[string]string{"csr": weakCSR(t, id, "rsa1024"), "spiffe_id": id}),
			http.StatusBadRequest, "at least 2048"},
		{"CSR with a P-224 key", issue(map[string]string{"csr": weakCSR(t, id, "p224"), "spiffe_id": id}),
			http.StatusBadRequest, "not allowed"},
		{"CSR requests a CA", issue(map[string]string{"csr": caCSR, "spiffe_id": id}),
			http.StatusBadRequest, "requests a CA certificate"},
		{"TTL above maximum", issue(map[string]string{"csr": goodCSR, "spiffe_id": id, "ttl": "25h"}),
			http.StatusBadRequest, "exceeds the maximum"},
		{"TTL not a duration", issue(map[string]string{"csr": goodCSR, "spiffe_id": id, "ttl": "soon"}),
			http.StatusBadRequest, "invalid ttl"},
		{"SPIFFE ID outside trust domain", issue(map[string]string{"csr": string(newCSR(t, "")), "spiffe_id": "spiffe://evil.test/ns/shop/sa/web"}),
			http.StatusBadRequest, "outside trust domain"},
		{"invalid JSON", issue([]byte(`{"csr": "x",`)),
			http.StatusBadRequest, "invalid JSON"},
		{"unknown field", issue([]byte(`{"csr": "x", "is_ca": true}`)),
			http.StatusBadRequest, "unknown field"},
		{"10 MB body", issue(huge),
			http.StatusRequestEntityTooLarge, "request body larger than"},
		{"no credentials", request{http.MethodPost, "/v1/issue/x509", "", map[string]string{"csr": goodCSR}, ""},
			http.StatusUnauthorized, "authentication required"},
		{"wrong bearer token", request{http.MethodPost, "/v1/issue/x509", "wardadm.not-the-token", map[string]string{"csr": goodCSR}, ""},
			http.StatusUnauthorized, "authentication required"},
		{"leases without credentials", request{http.MethodGet, "/v1/leases", "", nil, ""},
			http.StatusUnauthorized, "authentication required"},
		{"token create without credentials", request{http.MethodPost, "/v1/tokens/join", "", map[string]string{"spiffe_id": id}, ""},
			http.StatusUnauthorized, "authentication required"},
		{"metrics without credentials", request{http.MethodGet, "/metrics", "", nil, ""},
			http.StatusUnauthorized, "authentication required"},
		{"content type not JSON", request{http.MethodPost, "/v1/issue/x509", admin, `{"csr": "x"}`, "text/plain"},
			http.StatusUnsupportedMediaType, "not supported"},
		{"unknown endpoint", request{http.MethodGet, "/v1/secrets", admin, nil, ""},
			http.StatusNotFound, "no such endpoint"},
		{"lease list invalid state", request{http.MethodGet, "/v1/leases?state=gone", admin, nil, ""},
			http.StatusBadRequest, "invalid state"},
		{"lease list limit too high", request{http.MethodGet, "/v1/leases?limit=10001", admin, nil, ""},
			http.StatusBadRequest, "invalid limit"},
		{"renew increment above maximum", request{http.MethodPost, "/v1/leases/renew", admin, map[string]string{"lease_id": "x509/none", "increment": "25h"}, ""},
			http.StatusBadRequest, "exceeds the maximum"},
		{"revoke prefix too broad", request{http.MethodPost, "/v1/leases/revoke", admin, map[string]string{"prefix": "x509"}, ""},
			http.StatusBadRequest, "too broad"},
		{"join token TTL above maximum", request{http.MethodPost, "/v1/tokens/join", admin, map[string]string{"spiffe_id": id, "ttl": "25h"}, ""},
			http.StatusBadRequest, "exceeds the maximum"},
		{"JWT without audience", request{http.MethodPost, "/v1/issue/jwt", admin, map[string]any{"audience": []string{}}, ""},
			http.StatusBadRequest, "missing audience"},
		{"reused join token", request{http.MethodPost, "/v1/auth/join", "", map[string]string{"join_token": spent.token, "csr": goodCSR}, ""},
			http.StatusUnauthorized, "already used"},
		{"unknown join token", request{http.MethodPost, "/v1/auth/join", "", map[string]string{"join_token": "wardjoin.unknown", "csr": goodCSR}, ""},
			http.StatusUnauthorized, "join token invalid"},
		{"expired join token", request{http.MethodPost, "/v1/auth/join", "", map[string]string{"join_token": expiring.token, "csr": goodCSR}, ""},
			http.StatusUnauthorized, "expired"},
	}

	// Sleep until the 1s token has expired, if setup was quicker than that.
	if wait := time.Until(expiring.expiresAt.Add(100 * time.Millisecond)); wait > 0 {
		time.Sleep(wait)
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := send(t, tc.req)
			msg := wardtest.ErrorMessage(body)
			if status != tc.wantStatus {
				t.Errorf("%s %s = %d %q, want %d", tc.req.method, tc.req.path, status, msg, tc.wantStatus)
			}
			if !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("%s %s error = %q, want it to contain %q", tc.req.method, tc.req.path, msg, tc.wantMsg)
			}
			if !json.Valid(body) {
				t.Errorf("%s %s body = %q, want a JSON error object", tc.req.method, tc.req.path, body)
			}
			if status, _ := s.DoWith(t, client, "", http.MethodGet, "/v1/health", nil); status != http.StatusOK {
				t.Fatalf("GET /v1/health after %s = %d, want 200", tc.name, status)
			}
		})
	}

	// Every rejected request is audited, except the one for an unknown
	// endpoint, which no handler serves.
	rejected := 0
	for _, r := range auditRecords(t, s) {
		if r.Decision == "error" || r.Decision == "deny" {
			rejected++
		}
	}
	if rejected != len(cases)-1 {
		t.Errorf("audit log has %d error or deny lines, want %d (one per rejected request but the unknown endpoint)", rejected, len(cases)-1)
	}

	// Nothing above may have issued a certificate: the one join succeeded.
	leases := listLeases(t, s, "x509/")
	if len(leases) != 1 {
		t.Errorf("%d x509 leases after the bad requests, want 1 (the first join)", len(leases))
	}
}

// opensslCACSR returns a CSR made by openssl req that requests
// basicConstraints CA:TRUE.
func opensslCACSR(t *testing.T, id string) string {
	t.Helper()
	dir := outDir(t, "ca-csr")
	mustTool(t, dir, "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "key.pem", "-out", "csr.pem", "-subj", "/O=e2e",
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "subjectAltName=URI:"+id)
	addKeyFileSecret(t, filepath.Join(dir, "key.pem"))
	csr, err := os.ReadFile(filepath.Join(dir, "csr.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return string(csr)
}

type joinToken struct {
	token     string
	expiresAt time.Time
}

// createJoinTokenAPI creates a join token through the API and records it as
// a secret.
func createJoinTokenAPI(t *testing.T, s *wardtest.Server, id, ttl string) joinToken {
	t.Helper()
	status, body := s.Do(t, http.MethodPost, "/v1/tokens/join", map[string]string{"spiffe_id": id, "ttl": ttl})
	if status != http.StatusOK {
		t.Fatalf("POST /v1/tokens/join = %d %s, want 200", status, body)
	}
	var resp struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	addSecret("join token for "+id, []byte(resp.Token))
	return joinToken{resp.Token, resp.ExpiresAt}
}

// badSignatureCSR returns a CSR for id whose signature no longer matches:
// the last byte of the DER, inside the signature, is flipped.
func badSignatureCSR(t *testing.T, id string) string {
	t.Helper()
	block, _ := pem.Decode(newCSR(t, id))
	der := append([]byte(nil), block.Bytes...)
	der[len(der)-1] ^= 0x01
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// weakCSR returns a CSR for id with a key ward does not accept: "rsa1024"
// or "p224".
func weakCSR(t *testing.T, id, kind string) string {
	t.Helper()
	var key crypto.Signer
	var err error
	switch kind {
	case "rsa1024":
		key, err = rsa.GenerateKey(rand.Reader, 1024)
	case "p224":
		key, err = ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	default:
		t.Fatalf("weakCSR: unknown kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}
