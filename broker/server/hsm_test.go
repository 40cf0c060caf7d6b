package server

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/crypto/hsm"
	"ward.dev/ward/crypto/secret"
	"ward.dev/ward/internal/config"
	"ward.dev/ward/test/hsmtest"
)

// hsmConfig initializes a SoftHSM2 token with ward's keys and returns a
// configuration whose KEK and CA key live on it.
func hsmConfig(t testing.TB) (func(*config.Config), hsmtest.Token) {
	t.Helper()
	tok := hsmtest.NewToken(t, "ward")
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: secret.New([]byte(tok.PIN))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.InitKeys(hsm.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	h.Close()
	return func(c *config.Config) {
		c.KEK.Type = "pkcs11"
		c.CA.Backend = "pkcs11"
		c.HSM = config.HSM{Module: tok.Module, TokenLabel: tok.Label, PINFile: tok.PINFile}
	}, tok
}

func TestHSMBackedIssuance(t *testing.T) {
	edit, _ := hsmConfig(t)
	ts := startServer(t, edit)
	var resp x509Response
	if code := ts.call(t, "POST", "/v1/issue/x509", map[string]any{"csr": newCSR(t, ""), "spiffe_id": "spiffe://ward.test/a"}, &resp); code != http.StatusOK {
		t.Fatalf("issue = %d, want 200", code)
	}
	block, _ := pem.Decode([]byte(resp.Certificate))
	cert, _ := x509.ParseCertificate(block.Bytes)
	if err := cert.CheckSignatureFrom(ts.srv.ca.Certificate()); err != nil {
		t.Errorf("certificate does not verify under the HSM CA: %v", err)
	}
	if fileExists(ts.srv.cfg.DataDir + "/" + fileCAKey) {
		t.Error("a sealed CA key file exists although the CA key lives in the HSM")
	}
}

func TestHSMRemovedSealsAndRecovers(t *testing.T) {
	edit, tok := hsmConfig(t)
	ts := startServer(t, edit)
	issue := func() (int, string) {
		var resp map[string]any
		code := ts.call(t, "POST", "/v1/issue/x509", map[string]any{"csr": newCSR(t, ""), "spiffe_id": "spiffe://ward.test/a"}, &resp)
		msg, _ := resp["error"].(string)
		return code, msg
	}
	if code, msg := issue(); code != http.StatusOK {
		t.Fatalf("issue before removal = %d %s", code, msg)
	}

	moved := tok.TokenDir + ".away"
	if err := os.Rename(tok.TokenDir, moved); err != nil {
		t.Fatal(err)
	}
	code, msg := issue()
	if code != http.StatusServiceUnavailable || !strings.Contains(msg, "sealed") {
		t.Errorf("issue with the token removed = %d %q, want 503 sealed", code, msg)
	}

	if err := os.Rename(moved, tok.TokenDir); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, msg = issue()
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("issue after the token returned = %d %q, want 200 within 15s", code, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestHSMMissingAtStartServesSealed(t *testing.T) {
	edit, tok := hsmConfig(t)
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	edit(&cfg)
	moved := tok.TokenDir + ".away"
	if err := os.Rename(tok.TokenDir, moved); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan *Server, 1)
	go func() {
		done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), ln, func(s *Server) { ready <- s })
	}()
	defer func() { cancel(); <-done }()

	// While sealed, the listener responds over a throwaway certificate.
	client := insecureClient()
	resp, err := client.Get("https://" + ln.Addr().String() + "/v1/issue/x509")
	if err != nil {
		t.Fatalf("request while sealed: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "sealed") || !strings.Contains(string(body), "ward") {
		t.Errorf("sealed answer = %d %s, want 503 naming the sealed token", resp.StatusCode, body)
	}

	if err := os.Rename(moved, tok.TokenDir); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("server did not unseal within 20s of the token returning")
	}
	resp, err = client.Get("https://" + ln.Addr().String() + "/v1/health")
	if err != nil {
		t.Fatalf("health after unseal: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("health after unseal = %d, want 200", resp.StatusCode)
	}
}
