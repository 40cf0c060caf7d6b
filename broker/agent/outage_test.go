package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ward.dev/ward/broker/agent"
	"ward.dev/ward/test/wardtest"
)

// TestAgentSurvivesBrokerOutage stops the broker for longer than the
// agent's own certificate lives. The agent turns unready but keeps its
// files. Once the broker is back on the same address, it authenticates again
// with its platform credential (here an existing ward certificate) and turns
// ready without a restart.
func TestAgentSurvivesBrokerOutage(t *testing.T) {
	t.Parallel()
	listen := freeAddr(t)
	srv := wardtest.StartDev(t, wardtest.WithArgs("--listen", listen))
	dir := t.TempDir()

	// The platform credential: a certificate valid for an hour, as a
	// machine's provisioning would leave it.
	boot := filepath.Join(dir, "boot")
	if _, errOut, code := srv.Run(t, "issue", "x509", "--spiffe-id", webID, "--ttl", "1h", "--out", boot); code != 0 {
		t.Fatalf("ward issue x509 = exit %d: %s", code, errOut)
	}
	out := filepath.Join(dir, "secrets")
	if err := os.Mkdir(out, 0o750); err != nil {
		t.Fatal(err)
	}
	health := freeAddr(t)
	a, logs := startAgent(t, dir, fmt.Sprintf(`
broker: {addr: %s, ca_file: %s}
auth: {method: certificate, cert_file: %s, key_file: %s}
identity_ttl: 6s
output_dir: %s
credentials:
  - {name: svid, path: x509, ttl: 8s}
health: {listen: %s}
`, srv.Addr(), srv.CACertPath(), filepath.Join(boot, "cert.pem"), filepath.Join(boot, "key.pem"), out, health))

	waitFor(t, 20*time.Second, "agent ready", func() bool { return a.Ready() == nil })

	srv.Stop()
	start := time.Now()
	waitFor(t, 20*time.Second, "agent unready during the outage", func() bool { return a.Ready() != nil })
	if code := getStatus(t, "http://"+health+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz during the outage = %d, want 503", code)
	}
	if code := getStatus(t, "http://"+health+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz during the outage = %d, want 200", code)
	}
	if _, err := os.Stat(filepath.Join(out, "svid.cert.pem")); err != nil {
		t.Errorf("certificate file gone during the outage: %v", err)
	}
	// Stay down until the agent's own certificate has expired.
	waitFor(t, 20*time.Second, "agent certificate expiry", func() bool {
		err := a.Ready()
		return err != nil && strings.Contains(err.Error(), "agent certificate expired")
	})
	t.Logf("broker down for %s", time.Since(start).Round(time.Millisecond))

	srv.Restart()
	waitFor(t, 30*time.Second, "agent ready after the broker returned", func() bool { return a.Ready() == nil })
	if code := getStatus(t, "http://"+health+"/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz after recovery = %d, want 200", code)
	}
	if n := strings.Count(logs.String(), "agent authenticated"); n < 2 {
		t.Errorf("agent log shows %d authentications, want a second one after the outage", n)
	}
	checkNoSecretsLogged(t, logs.String(), out)
}

// TestAgentRevokesOnShutdown stops an agent configured with
// revoke_on_shutdown and checks that the broker lists its certificate's
// lease as revoked.
func TestAgentRevokesOnShutdown(t *testing.T) {
	t.Parallel()
	srv := wardtest.StartDev(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	yaml := fmt.Sprintf(`broker: {addr: %s, ca_file: %s}
auth: {method: join_token, join_token_file: %s}
output_dir: %s
credentials:
  - {name: svid, path: x509, ttl: 10m}
revoke_on_shutdown: true
`, srv.Addr(), srv.CACertPath(), joinToken(t, srv, dir, webID), dir)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, 20*time.Second, "agent ready", func() bool { return a.Ready() == nil })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}

	status, body := srv.Do(t, "GET", "/v1/leases?state=revoked&prefix=x509/"+webID, nil)
	if status != http.StatusOK {
		t.Fatalf("GET /v1/leases = %d %s", status, body)
	}
	var resp struct {
		Leases []struct {
			Object string `json:"object"`
		} `json:"leases"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Leases) != 1 {
		t.Errorf("revoked leases = %s, want the one credential lease", body)
	}
}

// TestAgentBrokerDownAtStart starts an agent whose broker does not respond.
// The agent retries with backoff instead of spinning, stays unready, and
// reports the reason.
func TestAgentBrokerDownAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	certFile, err := writeTestCA(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(certFile, ca); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "join.token")
	if err := os.WriteFile(token, []byte("wardjoin.unused"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.ParseConfig("agent.yaml", []byte(fmt.Sprintf(`
broker: {addr: "https://%s", ca_file: %s}
auth: {method: join_token, join_token_file: %s}
output_dir: %s
credentials:
  - {name: svid, path: x509, ttl: 1m}
`, freeAddr(t), ca, token, dir)))
	if err != nil {
		t.Fatal(err)
	}
	// Counting clock reads shows whether the renewal loop spins.
	var clockReads atomic.Int64
	a, err := agent.New(cfg, agent.Options{Now: func() time.Time {
		clockReads.Add(1)
		return time.Now()
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	waitFor(t, 10*time.Second, "two failed attempts", func() bool { return a.Stats().Failed >= 2 })
	failedBefore, readsBefore := a.Stats().Failed, clockReads.Load()
	time.Sleep(2 * time.Second) // the backoff is 1 s, 2 s, 4 s: at most two more attempts
	if got := a.Stats().Failed - failedBefore; got > 2 {
		t.Errorf("%d attempts in 2 s while the broker is down, want at most 2 (backoff)", got)
	}
	if got := clockReads.Load() - readsBefore; got > 1000 {
		t.Errorf("%d clock reads in 2 s while the broker is down, want a sleeping loop", got)
	}
	if err := a.Ready(); err == nil || !strings.Contains(err.Error(), "not yet authenticated") {
		t.Errorf("Ready() = %v, want not yet authenticated", err)
	}
}

// writeTestCA writes a self-signed certificate, a CA no broker uses.
func writeTestCA(t *testing.T, dir string) (string, error) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "test-ca.pem")
	return path, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}
