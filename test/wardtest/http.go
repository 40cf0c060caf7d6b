package wardtest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"testing"
	"time"
)

// maxResponse bounds a response body read by Do.
const maxResponse = 32 << 20

// HTTPClient returns a client that trusts only the server's trust bundle and
// offers TLS 1.3 only. It sends no credentials by itself.
func (s *Server) HTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: s.TLSConfig()},
		Timeout:   30 * time.Second,
	}
}

// TLSConfig returns a TLS 1.3 client configuration that trusts only the
// server's trust bundle. Add Certificates to authenticate with a ward client
// certificate.
func (s *Server) TLSConfig() *tls.Config {
	s.tb.Helper()
	pemBytes, err := os.ReadFile(s.CACertPath())
	if err != nil {
		s.tb.Fatalf("wardtest: read trust bundle: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		s.tb.Fatalf("wardtest: %s contains no PEM certificate", s.CACertPath())
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}
}

// Do sends a request with the admin bearer token and returns the status and
// body. A body of type []byte or string is sent as it is, nil sends none,
// and anything else is encoded as JSON. The test fails if no response
// arrives.
func (s *Server) Do(tb testing.TB, method, path string, body any) (status int, respBody []byte) {
	tb.Helper()
	return s.DoWith(tb, s.HTTPClient(), s.AdminToken(), method, path, body)
}

// DoWith is Do with another client (for a client certificate) and bearer
// token ("" sends no Authorization header).
func (s *Server) DoWith(tb testing.TB, client *http.Client, token, method, path string, body any) (status int, respBody []byte) {
	tb.Helper()

	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		reader = bytes.NewReader(b)
	case string:
		reader = bytes.NewReader([]byte(b))
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			tb.Fatalf("wardtest: encode request body: %v", err)
		}
		reader = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.Addr()+path, reader)
	if err != nil {
		tb.Fatalf("wardtest: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}

	return Send(tb, client, req)
}

// Send sends req, built by the caller for full control of headers, and
// returns the status and body. The test fails if no response arrives.
func Send(tb testing.TB, client *http.Client, req *http.Request) (status int, respBody []byte) {
	tb.Helper()

	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("wardtest: %s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	respBody, err = io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		tb.Fatalf("wardtest: read response of %s %s: %v", req.Method, req.URL.Path, err)
	}
	return resp.StatusCode, respBody
}

// ErrorMessage returns the "error" field of a JSON error response, or the
// body as text when it has none.
func ErrorMessage(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return string(body)
}
