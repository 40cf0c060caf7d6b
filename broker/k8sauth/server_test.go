package k8sauth_test

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
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"

	"ward.dev/ward/broker/agent"
	"ward.dev/ward/broker/k8sauth"
	"ward.dev/ward/broker/server"
	"ward.dev/ward/internal/config"
)

// fakeAPIServer serves TokenReviews the way kube-apiserver does: a real
// API server cannot run here. It accepts the token "good-<ns>-<sa>" for the
// audience ward, and checks the caller's bearer token.
func fakeAPIServer(t *testing.T, ignoreAudiences bool) (*httptest.Server, string) {
	t.Helper()
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" || r.Header.Get("Authorization") != "Bearer ward-sa-token" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		var review authenticationv1.TokenReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if rest, ok := strings.CutPrefix(review.Spec.Token, "good-"); ok && len(review.Spec.Audiences) == 1 && review.Spec.Audiences[0] == "ward" {
			ns, sa, _ := strings.Cut(rest, "-")
			review.Status = authenticationv1.TokenReviewStatus{
				Authenticated: true,
				User: authenticationv1.UserInfo{
					Username: "system:serviceaccount:" + ns + ":" + sa,
					Extra:    map[string]authenticationv1.ExtraValue{"authentication.kubernetes.io/pod-name": {"web-abc"}},
				},
			}
			if !ignoreAudiences {
				review.Status.Audiences = review.Spec.Audiences
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(review)
	}))
	t.Cleanup(ts.Close)

	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("ward-sa-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return ts, dir
}

func TestTokenReviewVerify(t *testing.T) {
	ts, dir := fakeAPIServer(t, false)
	v, err := k8sauth.NewTokenReview(k8sauth.TokenReviewConfig{
		APIServer: ts.URL, Audience: "ward", CAFile: filepath.Join(dir, "ca.crt"), BearerTokenFile: filepath.Join(dir, "token"),
	})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(context.Background(), "good-shop-web")
	if err != nil {
		t.Fatalf("Verify(good) = %v", err)
	}
	if id.Namespace != "shop" || id.ServiceAccount != "web" || id.PodName != "web-abc" {
		t.Errorf("Verify(good) = %+v, want shop/web in pod web-abc", id)
	}
	if _, err := v.Verify(context.Background(), "bad"); !errors.Is(err, k8sauth.ErrInvalidToken) {
		t.Errorf("Verify(bad) = %v, want ErrInvalidToken", err)
	}

	deaf, deafDir := fakeAPIServer(t, true)
	v2, err := k8sauth.NewTokenReview(k8sauth.TokenReviewConfig{
		APIServer: deaf.URL, Audience: "ward", CAFile: filepath.Join(deafDir, "ca.crt"), BearerTokenFile: filepath.Join(deafDir, "token"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v2.Verify(context.Background(), "good-shop-web"); !errors.Is(err, k8sauth.ErrInvalidToken) {
		t.Errorf("Verify with an API server that ignores audiences = %v, want ErrInvalidToken", err)
	}

	ts.Close()
	if _, err := v.Verify(context.Background(), "good-shop-web"); !errors.Is(err, k8sauth.ErrUnavailable) {
		t.Errorf("Verify with the API server down = %v, want ErrUnavailable", err)
	}
}

// startBroker opens a ward server in this process with POST
// /v1/auth/kubernetes served by v, and returns its URL and CA file.
func startBroker(t *testing.T, v k8sauth.Verifier) (string, string) {
	t.Helper()
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.Listen.API = "127.0.0.1:0"
	s, err := server.Open(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("server.Open = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	mux := http.NewServeMux()
	mux.Handle("POST /v1/auth/kubernetes", s.KubernetesAuthHandler(v))
	mux.Handle("/", s.Handler())
	ts := httptest.NewUnstartedServer(mux)
	if ts.TLS, err = s.TLSConfig(); err != nil {
		t.Fatal(err)
	}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, s.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return ts.URL, ca
}

func csrPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// TestKubernetesAuthEndpoint sends service-account tokens to the broker's
// POST /v1/auth/kubernetes.
func TestKubernetesAuthEndpoint(t *testing.T) {
	c := newCluster(t)
	c.now = time.Now()
	addr, caFile := startBroker(t, c.verifier(t))
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: newTLS(pool)}}

	post := func(token string) (int, map[string]any) {
		body, _ := json.Marshal(map[string]string{"token": token, "csr": csrPEM(t), "ttl": "10m"})
		resp, err := client.Post(addr+"/v1/auth/kubernetes", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		return resp.StatusCode, out
	}

	code, out := post(c.mint(t, tokenSpec{}))
	if code != http.StatusOK || out["spiffe_id"] != "spiffe://ward.test/ns/shop/sa/web" {
		t.Errorf("POST with a valid token = %d %v, want 200 and spiffe://ward.test/ns/shop/sa/web", code, out)
	}
	code, out = post(c.mint(t, tokenSpec{audience: []string{"vault"}}))
	if code != http.StatusUnauthorized || !strings.Contains(fmt.Sprint(out["error"]), "audience") {
		t.Errorf("POST with another audience = %d %v, want 401 naming the audience", code, out)
	}
	code, _ = post(c.mint(t, tokenSpec{expiry: -time.Hour}))
	if code != http.StatusUnauthorized {
		t.Errorf("POST with an expired token = %d, want 401", code)
	}
	code, out = post(c.mint(t, tokenSpec{namespace: "other", account: "x"}))
	if code != http.StatusForbidden {
		t.Errorf("POST for a service account the policy does not allow = %d %v, want 403", code, out)
	}
}

// TestAgentKubernetesAuth runs an agent that authenticates with a projected
// token file against a broker serving /v1/auth/kubernetes.
func TestAgentKubernetesAuth(t *testing.T) {
	c := newCluster(t)
	c.now = time.Now()
	addr, caFile := startBroker(t, c.verifier(t))
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(c.mint(t, tokenSpec{})), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "agent.yaml")
	yaml := fmt.Sprintf("broker: {addr: %s, ca_file: %s}\nauth: {method: kubernetes, token_file: %s}\noutput_dir: %s\ncredentials:\n  - {name: svid, path: x509, ttl: 1m}\n",
		addr, caFile, tokenFile, dir)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.InitOnly(ctx); err != nil {
		t.Fatalf("InitOnly = %v", err)
	}
	pemBytes, err := os.ReadFile(filepath.Join(dir, "svid.cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if got := cert.URIs[0].String(); got != "spiffe://ward.test/ns/shop/sa/web" {
		t.Errorf("certificate ID = %s, want spiffe://ward.test/ns/shop/sa/web", got)
	}
}

func newTLS(pool *x509.CertPool) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}
}
