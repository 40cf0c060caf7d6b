package xds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const testTD = "example.org"

func testID(name string) string { return "spiffe://" + testTD + "/ns/test/sa/" + name }

// testCA is an in-test ECDSA P-256 CA implementing Issuer and
// ServingIssuer. Unless noIPs is set, every leaf also carries the IP SAN
// 127.0.0.1, so any certificate can serve on loopback.
type testCA struct {
	noIPs  bool
	mu     sync.Mutex
	key    *ecdsa.PrivateKey
	cert   *x509.Certificate
	bundle []byte // PEM of every trusted root, old and new during a rotation
	serial int64
	issued map[string]int
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	ca := &testCA{issued: map[string]int{}}
	ca.rotate(t, false)
	return ca
}

// rotate replaces the signing CA. With keepOld the bundle holds both.
func (ca *testCA) rotate(t testing.TB, keepOld bool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(ca.serial),
		Subject:               pkix.Name{CommonName: "ward test root"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if keepOld {
		ca.bundle = append(ca.bundle, pemCert...)
	} else {
		ca.bundle = pemCert
	}
	ca.key, ca.cert = key, cert
}

func (ca *testCA) IssueSVID(ctx context.Context, spiffeID string, ttl time.Duration) ([]byte, []byte, time.Time, error) {
	var hosts []string
	if !ca.noIPs {
		hosts = []string{"127.0.0.1"}
	}
	return ca.issue(spiffeID, hosts, ttl)
}

func (ca *testCA) IssueServingSVID(_ context.Context, spiffeID string, hosts []string, ttl time.Duration) ([]byte, []byte, time.Time, error) {
	return ca.issue(spiffeID, hosts, ttl)
}

func (ca *testCA) issue(spiffeID string, hosts []string, ttl time.Duration) ([]byte, []byte, time.Time, error) {
	u, err := url.Parse(spiffeID)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.serial++
	ca.issued[spiffeID]++
	expires := time.Now().Add(ttl)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial),
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     expires,
		URIs:         []*url.URL{u},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), expires, nil
}

func (ca *testCA) TrustBundlePEM() []byte {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return append([]byte(nil), ca.bundle...)
}

// tlsCert issues an SVID and returns it as a tls.Certificate.
func (ca *testCA) tlsCert(t testing.TB, spiffeID string) tls.Certificate {
	t.Helper()
	chain, key, _, err := ca.IssueSVID(context.Background(), spiffeID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(chain, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// writeSVIDFiles writes cert.pem, key.pem and ca.pem for spiffeID into a new
// directory, each by temp file and rename as gRPC's file watcher expects.
func (ca *testCA) writeSVIDFiles(t testing.TB, dir, spiffeID string) (certFile, keyFile, caFile string) {
	t.Helper()
	chain, key, _, err := ca.IssueSVID(context.Background(), spiffeID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, caFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	for path, data := range map[string][]byte{certFile: chain, keyFile: key, caFile: ca.TrustBundlePEM()} {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile, caFile
}

// fakeAuthz is a table of permitted (caller, target) pairs. Rules, when
// set, are returned by ConnectRules.
type fakeAuthz struct {
	mu    sync.Mutex
	allow map[[2]string]bool
	rules []ConnectRule
}

func newFakeAuthz(pairs ...[2]string) *fakeAuthz {
	f := &fakeAuthz{allow: map[[2]string]bool{}}
	for _, p := range pairs {
		f.allow[p] = true
	}
	return f
}

func (f *fakeAuthz) set(caller, target string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.allow[[2]string{caller, target}] = ok
}

func (f *fakeAuthz) Allowed(subject, _, object, action string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if action != ActionConnect || len(object) <= len(ObjectPrefix) {
		return false
	}
	return f.allow[[2]string{subject, object[len(ObjectPrefix):]}]
}

// ConnectRules lists one rule per permitted pair, then the extra rules.
func (f *fakeAuthz) ConnectRules(string) []ConnectRule {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ConnectRule
	for pair, ok := range f.allow {
		if ok {
			out = append(out, ConnectRule{Subject: pair[0], Object: ObjectPrefix + pair[1], Source: "fake"})
		}
	}
	return append(out, f.rules...)
}

// startServer starts a ward xDS server on a loopback port and stops it when
// the test ends.
func startServer(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = testTD
	}
	if cfg.Domain == "" {
		cfg.Domain = "test"
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = 10 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve() = %v", err)
		}
	})
	return s, lis.Addr().String()
}

// testLogWriter sends log lines to the test log.
type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
