package agent_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ward.dev/ward/broker/agent"
	"ward.dev/ward/test/wardtest"
)

func TestMain(m *testing.M) { os.Exit(wardtest.Main(m)) }

const webID = "spiffe://ward.test/ns/shop/sa/web"

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// joinToken creates a join token for id on srv and writes it to a file.
func joinToken(t *testing.T, srv *wardtest.Server, dir, id string) string {
	t.Helper()
	out, errOut, code := srv.Run(t, "token", "create", "--spiffe-id", id, "--ttl", "10m")
	if code != 0 {
		t.Fatalf("ward token create = exit %d, stderr %s", code, errOut)
	}
	path := filepath.Join(dir, "join.token")
	if err := os.WriteFile(path, []byte(strings.TrimSpace(out)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startAgent runs an agent from YAML until the test ends and returns it
// with its log.
func startAgent(t *testing.T, dir, yaml string) (*agent.Agent, *syncBuffer) {
	t.Helper()
	path := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig = %v", err)
	}
	logs := &syncBuffer{}
	a, err := agent.New(cfg, agent.Options{Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return a, logs
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s holds no PEM block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %#o, want %#o", filepath.Base(path), got, want)
	}
}

// TestAgentRenewsAndSignals runs an agent against `ward serve --dev` with
// 30-second credentials: files appear with their modes, are replaced
// atomically before they expire, and the application's process (this test
// process, through a PID file) receives SIGUSR1 after each write.
func TestAgentRenewsAndSignals(t *testing.T) {
	t.Parallel()
	srv := wardtest.StartDev(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "secrets")
	if err := os.Mkdir(out, 0o750); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "app.pid")
	if err := os.WriteFile(pidFile, []byte(fmt.Sprint(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGUSR1)
	defer signal.Stop(sigs)

	health := freeAddr(t)
	a, logs := startAgent(t, dir, fmt.Sprintf(`
broker: {addr: %s, ca_file: %s}
auth: {method: join_token, join_token_file: %s}
identity_ttl: 2m
output_dir: %s
credentials:
  - name: svid
    path: x509
    ttl: 30s
  - name: orders
    path: jwt
    audience: [orders.shop]
    ttl: 30s
templates:
  - name: app
    destination: app.json
    mode: 0640
    inline: '{"id": {{ json (cred "svid").spiffe_id }}, "leaf": {{ json (pemFirst .Creds.svid.cert) }}, "jwt": {{ json .Creds.orders.token }}}'
notify: {pid_file: %s, signal: USR1}
health: {listen: %s}
`, srv.Addr(), srv.CACertPath(), joinToken(t, srv, dir, webID), out, pidFile, health))

	certPath := filepath.Join(out, "svid.cert.pem")
	waitFor(t, 20*time.Second, "first certificate", func() bool { return a.Ready() == nil })
	checkMode(t, filepath.Join(out, "svid.key.pem"), 0o600)
	checkMode(t, certPath, 0o640)
	checkMode(t, filepath.Join(out, "svid.bundle.pem"), 0o640)
	checkMode(t, filepath.Join(out, "orders.jwt"), 0o600)
	checkMode(t, filepath.Join(out, "app.json"), 0o640)

	first := readCert(t, certPath)
	if got := first.URIs[0].String(); got != webID {
		t.Errorf("certificate URI SAN = %s, want %s", got, webID)
	}
	app, err := os.ReadFile(filepath.Join(out, "app.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(app, []byte(`"id": "`+webID+`"`)) || !bytes.Contains(app, []byte("BEGIN CERTIFICATE")) {
		t.Errorf("app.json = %s, want the SPIFFE ID and the leaf certificate", app)
	}
	select {
	case <-sigs:
	case <-time.After(10 * time.Second):
		t.Fatal("no SIGUSR1 after the first write")
	}
	if code := getStatus(t, "http://"+health+"/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz = %d, want 200", code)
	}

	// Read the certificate continuously: every read must be a whole,
	// parseable certificate, which holds only if replacement is atomic.
	stop := make(chan struct{})
	torn := make(chan string, 1)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(certPath)
			block, _ := pem.Decode(b)
			if err != nil || block == nil {
				select {
				case torn <- fmt.Sprintf("read %d bytes, err %v", len(b), err):
				default:
				}
				return
			}
			if _, err := x509.ParseCertificate(block.Bytes); err != nil {
				select {
				case torn <- err.Error():
				default:
				}
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()

	prev := first
	for i := range 2 {
		waitFor(t, 30*time.Second, fmt.Sprintf("renewal %d", i+1), func() bool {
			return readCert(t, certPath).SerialNumber.Cmp(prev.SerialNumber) != 0
		})
		now := time.Now()
		if !now.Before(prev.NotAfter) {
			t.Errorf("renewal %d: certificate replaced at %s, after the old one expired at %s", i+1, now, prev.NotAfter)
		}
		select {
		case <-sigs:
		case <-time.After(10 * time.Second):
			t.Fatalf("renewal %d: no SIGUSR1", i+1)
		}
		prev = readCert(t, certPath)
	}
	close(stop)
	select {
	case msg := <-torn:
		t.Errorf("a reader saw a partial certificate file: %s", msg)
	default:
	}

	// The agent keeps renewing, so a temporary file may exist for the few
	// milliseconds of a write. One that is still there seconds later leaked.
	waitFor(t, 5*time.Second, "no temporary file in the output directory", func() bool {
		entries, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				return false
			}
		}
		return true
	})
	checkNoSecretsLogged(t, logs.String(), out)
}

// checkNoSecretsLogged fails if the log holds any PEM block, JWT or join
// token, or the content of any file in dir.
func checkNoSecretsLogged(t *testing.T, log, dir string) {
	t.Helper()
	if log == "" {
		t.Fatal("agent log is empty; the check would prove nothing")
	}
	for _, marker := range []string{"-----BEGIN", "eyJ", "wardjoin.", "PRIVATE KEY"} {
		if strings.Contains(log, marker) {
			t.Errorf("agent log contains %q", marker)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if len(line) >= 16 && !strings.HasPrefix(line, "-----") && strings.Contains(log, line) {
				t.Errorf("agent log contains a line of %s", e.Name())
			}
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
