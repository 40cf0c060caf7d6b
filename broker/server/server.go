// Package server is ward's credential API. It authenticates workloads (join
// tokens, Kubernetes service-account tokens, ward client certificates, the
// admin bearer token) and checks the policy before every issuance. It signs
// X.509-SVIDs and JWT-SVIDs, records each lease durably before the
// credential leaves, and writes an audit line for every request.
//
// Security contract: every endpoint but /v1/health, /v1/bundle, /v1/crl and
// /v1/jwks requires an authenticated caller; decisions default to deny; the
// listener speaks TLS 1.3 only; request bodies are bounded; secrets (tokens,
// keys) never reach a log or the audit file, which carries HMACs instead; if
// the lease or the audit record cannot be written, no credential is returned.
package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ward.dev/ward/authz"
	"ward.dev/ward/broker/ca"
	"ward.dev/ward/broker/jwtsvid"
	"ward.dev/ward/broker/k8sauth"
	"ward.dev/ward/broker/lease"
	"ward.dev/ward/broker/pgcred"
	"ward.dev/ward/broker/vault"
	"ward.dev/ward/crypto/kek"
	"ward.dev/ward/crypto/keyset"
	"ward.dev/ward/internal/audit"
	"ward.dev/ward/internal/config"
	"ward.dev/ward/internal/store"
	"ward.dev/ward/masking/pgproxy"
	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/transform"
	"ward.dev/ward/xds"
)

const (
	adminTokenPrefix = "wardadm."
	joinTokenPrefix  = "wardjoin."
	// maxBody bounds every request body; a CSR with a 4096-bit RSA key is
	// under 2 KiB.
	maxBody = 64 << 10
	// serverCertTTL is the lifetime of the API listener's own certificate,
	// issued afresh at every start.
	serverCertTTL = 30 * 24 * time.Hour
	sweepInterval = time.Second
	// kekProbeInterval is how often a running server checks that its KEK
	// provider is still reachable.
	kekProbeInterval = time.Second
)

// Server is one ward API server. It is safe for concurrent use.
type Server struct {
	cfg    config.Config
	lock   *os.File // held for the server's lifetime
	log    *slog.Logger
	now    func() time.Time
	store  *store.Store
	leases *lease.Manager
	ca     *ca.CA
	caPEM  []byte
	jwt    *jwtsvid.Issuer
	authz  *authz.Enforcer
	audit  *audit.Log
	met    *metrics
	pg     *pgcred.Issuer // nil when no database roles are configured

	backends *backends
	keyset   *keyset.Keyset // the server's data keys; rotated while serving

	vault    *vault.Client // nil unless a vault: section is configured
	vaultIss *vault.Issuer
	vaultDB  map[string]string // database role name -> Vault path, for issuer: vault

	pgproxy     *pgproxy.Server // nil unless a pgproxy: section is configured
	pgproxyAddr string
	pgproxyDB   string

	k8s    k8sauth.Verifier // nil unless a kubernetes: section is configured
	mesh   *xds.Server      // nil unless mesh.enabled
	meshMu sync.Mutex       // serializes service catalogue changes

	maskKeys  *transform.Keys        // the masking key for tokenize and detokenize
	maskRules *rules.Ruleset         // nil unless masking.rules is configured
	kek       kek.KEK                // probed while serving; see watchKEK
	sealed    atomic.Pointer[string] // the reason the server is sealed; nil when unsealed
	crlNumber atomic.Int64           // the last CRL number issued

	adminID     string
	adminDigest [sha256.Size]byte

	// revoked holds the serials (hex) of revoked certificates that have not
	// expired, so a revoked client certificate stops authenticating at once.
	revoked sync.Map
}

// Open prepares a server from cfg: it creates or opens the data directory,
// unseals the keys, opens the store and loads the policy.
func Open(cfg config.Config, log *slog.Logger) (_ *Server, err error) {
	cfg.FillDataDirPaths()
	now := time.Now
	s := &Server{cfg: cfg, log: log, now: now, adminID: AdminID(cfg.TrustDomain), met: newMetrics()}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	if s.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if s.backends, err = openBackends(cfg); err != nil {
		return nil, err
	}
	k, err := openKeys(cfg.DataDir, cfg.KEK.Path, cfg.Store.Path, cfg.TrustDomain, s.backends, now())
	if err != nil {
		return nil, err
	}
	s.kek = k.kek
	// A used data directory without its store would start empty: revoked
	// certificates would authenticate again and quarantines vanish.
	if !k.created && k.setAside == "" && !fileExists(cfg.Store.Path) {
		return nil, fmt.Errorf("store %s is missing although %s exists: restore it from a backup; ward does not start a used data directory with an empty store",
			cfg.Store.Path, filepath.Join(cfg.DataDir, fileCACert))
	}
	if k.setAside != "" {
		log.Warn("an earlier first start stopped before it finished; its files were moved aside and keys created afresh", "moved_to", k.setAside)
	}
	// The store is created right after the keys, so that a first start that
	// fails later (a policy file missing from the configuration) leaves a
	// data directory the next start accepts.
	if s.store, err = store.Open(cfg.Store.Path); err != nil {
		return nil, err
	}
	s.keyset = k.keyset
	s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.caCert.Raw})
	s.adminDigest = sha256.Sum256(k.admin)
	if err := s.openMasking(k.keyset); err != nil {
		return nil, inSection(&cfg, "masking", err)
	}
	if s.ca, err = ca.New(k.caCert, k.caSigner); err != nil {
		return nil, err
	}
	if s.jwt, err = jwtsvid.New(k.jwt, now); err != nil {
		return nil, err
	}

	// The default policy is written only where the configuration expects
	// it, inside the data directory; a configured policy file must exist.
	if cfg.Policy.File == filepath.Join(cfg.DataDir, "policy.csv") && cfg.Policy.Model == filepath.Join(cfg.DataDir, "model.conf") {
		if _, _, err := authz.WriteDefaults(cfg.DataDir, cfg.TrustDomain, s.adminID, cfg.Environment); err != nil {
			return nil, fmt.Errorf("write default policy: %w", err)
		}
	}
	if s.authz, err = authz.New(cfg.Policy.Model, cfg.Policy.File, authz.WithLogger(log)); err != nil {
		if cfg.Path() == "" {
			return nil, err
		}
		return nil, inSection(&cfg, "policy", err)
	}
	if s.audit, err = audit.Open(cfg.Audit.Path, k.auditKey, now); err != nil {
		return nil, err
	}

	s.leases = lease.New(s.store, log, now)
	s.leases.OnEnd(s.leaseEnded)
	if err := s.loadRevoked(context.Background()); err != nil {
		return nil, err
	}
	if err := s.loadQuarantines(context.Background()); err != nil {
		return nil, err
	}
	if k := cfg.Kubernetes; k != nil {
		if s.k8s, err = k8sauth.New(context.Background(), k8sauth.Settings(*k)); err != nil {
			return nil, inSection(&cfg, "kubernetes", err)
		}
	}
	if err := s.openMesh(context.Background()); err != nil {
		return nil, inSection(&cfg, "mesh", err)
	}
	if err := s.openPGProxy(); err != nil {
		return nil, inSection(&cfg, "pgproxy", err)
	}
	if err := s.openVault(&cfg); err != nil {
		return nil, inSection(&cfg, "vault", err)
	}
	if err := s.openDatabases(cfg.Databases); err != nil {
		return nil, inSection(&cfg, "databases", err)
	}
	s.met.register(s.store)
	return s, nil
}

// inSection prefixes an error from a section of the configuration with
// "file:line: key", unless the error already names the file.
func inSection(cfg *config.Config, key string, err error) error {
	if cfg.Path() != "" && strings.Contains(err.Error(), cfg.Path()) {
		return err
	}
	return fmt.Errorf("%s: %w", cfg.Where(key), err)
}

// AdminID returns the SPIFFE ID that the admin bearer token authenticates as.
func AdminID(trustDomain string) string { return "spiffe://" + trustDomain + "/ward/admin" }

// CAPEM returns the trust bundle: the CA certificate in PEM.
func (s *Server) CAPEM() []byte { return s.caPEM }

// Authz returns the policy enforcer, for reload on SIGHUP.
func (s *Server) Authz() *authz.Enforcer { return s.authz }

// Config returns the effective configuration.
func (s *Server) Config() config.Config { return s.cfg }

// Close releases the database connections, the store, the audit file and
// the data directory lock. It is safe on a partly opened server.
func (s *Server) Close() error {
	var errs []error
	if s.pg != nil {
		s.pg.Close()
	}
	if s.vault != nil {
		s.vault.Close()
	}
	if s.pgproxy != nil {
		s.pgproxy.Close()
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	if s.audit != nil {
		errs = append(errs, s.audit.Close())
	}
	s.backends.close()
	if s.lock != nil {
		errs = append(errs, s.lock.Close())
	}
	return errors.Join(errs...)
}

func (s *Server) loadRevoked(ctx context.Context) error {
	serials, err := s.store.RevokedSerials(ctx, s.now())
	if err != nil {
		return err
	}
	for serial := range serials {
		s.revoked.Store(serial, struct{}{})
	}
	return nil
}

func (s *Server) leaseEnded(l store.Lease, state string) {
	if state == store.StateRevoked && l.Serial != "" {
		s.revoked.Store(l.Serial, struct{}{})
	}
	s.met.leaseEnded(state)
}

// TLSConfig returns the API listener's TLS configuration: TLS 1.3 only, a
// certificate issued by ward's own CA at start, and client certificates
// verified against that CA when a client offers one.
func (s *Server) TLSConfig() (*tls.Config, error) {
	cert, err := s.serverCertificate()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.Certificate())
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	}, nil
}

func (s *Server) serverCertificate() (tls.Certificate, error) {
	key, err := newP256Key()
	if err != nil {
		return tls.Certificate{}, err
	}
	dns := []string{"localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if host, _, err := net.SplitHostPort(s.cfg.Listen.API); err == nil && host != "" {
		if ip := net.ParseIP(host); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, host)
		}
	}
	for _, name := range s.cfg.APINames {
		if ip := net.ParseIP(name); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, name)
		}
	}
	issued, err := s.ca.Sign(ca.Request{
		PublicKey: key.Public(),
		SPIFFEID:  mustSPIFFE("spiffe://" + s.cfg.TrustDomain + "/ward/server"),
		DNSNames:  dns,
		IPs:       ips,
		TTL:       serverCertTTL,
	})
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue API server certificate: %w", err)
	}
	return tls.Certificate{
		Certificate: [][]byte{issued.DER, s.ca.Certificate().Raw},
		PrivateKey:  key,
		Leaf:        issued.Cert,
	}, nil
}

// Serve accepts HTTPS connections on ln until ctx ends, and runs the lease
// sweeper beside it.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	tlsCfg, err := s.TLSConfig()
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}

	sweepCtx, stopSweep := context.WithCancel(ctx)
	defer stopSweep()
	go s.leases.RunSweeper(sweepCtx, sweepInterval)
	go s.watchKEK(sweepCtx, s.kek, kekProbeInterval)
	rotation := time.NewTicker(rotationCheck)
	defer rotation.Stop()
	go s.rotateKeys(sweepCtx, rotation.C)
	if s.mesh != nil {
		if err := s.serveMesh(sweepCtx); err != nil {
			return err
		}
	}
	if s.pgproxy != nil {
		if err := s.servePGProxy(sweepCtx); err != nil {
			return err
		}
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ReloadPolicy re-reads the policy files; on error the old policy stays.
func (s *Server) ReloadPolicy() error {
	err := s.authz.Reload()
	if err != nil {
		s.log.Error("policy reload rejected, previous policy stays in force", "error", err)
		return err
	}
	s.log.Info("policy reloaded", "version", s.authz.Version())
	return nil
}

// randomToken returns prefix followed by 32 random bytes in base64url.
func randomToken(prefix string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return prefix + encodeB64(b), nil
}

// fileExists reports whether path exists.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
