package pgproxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"ward.dev/ward/authz"
	"ward.dev/ward/crypto/secret"
	"ward.dev/ward/masking/rules"
)

// Decider decides authorization requests; *authz.Enforcer implements it.
type Decider interface {
	Decide(subject, domain, object, action string) authz.Decision
}

var _ Decider = (*authz.Enforcer)(nil)

// quarantineLister is implemented by deciders that quarantine callers. The
// proxy rejects a quarantined caller at login, in addition to the denials
// Decide already returns for it.
type quarantineLister interface {
	Quarantined() map[string]string
}

var _ quarantineLister = (*authz.Enforcer)(nil)

// Options are the dependencies of a Server.
type Options struct {
	Config *Config
	Authz  Decider
	Logins LoginStore
	// Rules is the compiled masking rules.
	Rules *rules.Plan
	// UpstreamPassword is the password the proxy logs in with.
	UpstreamPassword secret.Bytes
	Logger           *slog.Logger
	// Clock and Rand default to time.Now and crypto/rand.Reader.
	Clock func() time.Time
	Rand  io.Reader
}

// Server is the masking proxy. It is safe for concurrent use; Serve may be
// called for several listeners.
type Server struct {
	cfg       *Config
	authz     Decider
	logins    LoginStore
	password  secret.Bytes
	log       *slog.Logger
	clock     func() time.Time
	rand      io.Reader
	clientTLS *tls.Config
	upTLS     *tls.Config

	pool       *pgxpool.Pool
	catalog    *pgCatalog
	maskers    *maskers
	statements statementCache
	// schemaGen counts the statements through the proxy that may have
	// changed the catalog (schemaChanged).
	schemaGen atomic.Uint64
	limiter   *loginLimiter
	slots     chan struct{}

	mu       sync.Mutex
	sessions map[uint32]*session // by the process ID the client was given
	closed   bool
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

// New returns a Server. It opens a small pool of catalog connections
// upstream lazily, on first use.
func New(opts Options) (*Server, error) {
	if opts.Config == nil || opts.Authz == nil || opts.Logins == nil || opts.Rules == nil {
		return nil, errors.New("pgproxy.New: Config, Authz, Logins and Rules are required")
	}
	s := &Server{
		cfg: opts.Config, authz: opts.Authz, logins: opts.Logins, password: opts.UpstreamPassword,
		log: opts.Logger, clock: opts.Clock, rand: opts.Rand,
		slots:    make(chan struct{}, opts.Config.Limits.MaxConnections),
		sessions: map[uint32]*session{}, conns: map[net.Conn]struct{}{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}

	s.limiter = newLoginLimiter(s.clock)
	s.statements.clock = s.clock

	var err error
	if s.clientTLS, err = clientTLSConfig(opts.Config.TLS); err != nil {
		return nil, err
	}
	if s.upTLS, err = upstreamTLSConfig(opts.Config.Upstream); err != nil {
		return nil, err
	}

	poolCfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	s.fillConnConfig(&poolCfg.ConnConfig.Config, nil)
	poolCfg.MaxConns = 2
	poolCfg.MinConns = 0
	s.pool, err = pgxpool.NewWithConfig(context.Background(), poolCfg)
	if err != nil {
		return nil, fmt.Errorf("pgproxy: catalog pool: %w", err)
	}
	s.catalog = newPGCatalog(s.pool, opts.Config.Limits.ConnectTimeout, s.clock)
	s.maskers = &maskers{plan: opts.Rules, cat: s.catalog, clock: s.clock, filled: s.clock(),
		byCol: map[rules.Column]*columnMasker{}, tables: map[string]*rules.Table{}}
	return s, nil
}

func clientTLSConfig(c *ServerTLS) (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("pgproxy: loading TLS certificate %s: %w", c.CertFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("pgproxy: reading client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("pgproxy: tls.client_ca_file %s contains no PEM certificate", c.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

func upstreamTLSConfig(u Upstream) (*tls.Config, error) {
	if u.TLS != TLSVerifyFull {
		return nil, nil
	}
	host, _, err := net.SplitHostPort(u.Address)
	if err != nil {
		return nil, fmt.Errorf("pgproxy: upstream.address %q: %w", u.Address, err)
	}
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if u.ServerName != "" {
		cfg.ServerName = u.ServerName
	}
	if u.CAFile != "" {
		pem, err := os.ReadFile(u.CAFile)
		if err != nil {
			return nil, fmt.Errorf("pgproxy: reading upstream CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("pgproxy: upstream.ca_file %s contains no PEM certificate", u.CAFile)
		}
	}
	return cfg, nil
}

// fillConnConfig sets where and how to log in upstream. Everything comes
// from the proxy's configuration; nothing comes from PG* environment
// variables or the client, except the runtime parameters passed in.
func (s *Server) fillConnConfig(c *pgconn.Config, params map[string]string) {
	host, port, _ := net.SplitHostPort(s.cfg.Upstream.Address)
	p, _ := strconv.Atoi(port)
	c.Host, c.Port = host, uint16(p)
	c.Database = s.cfg.Upstream.Database
	c.User = s.cfg.Upstream.User
	pw := s.password.Reveal()
	c.Password = string(pw)
	clear(pw)
	c.TLSConfig = s.upTLS
	c.Fallbacks = nil
	c.ConnectTimeout = s.cfg.Limits.ConnectTimeout
	c.KerberosSrvName, c.KerberosSpn = "", ""
	c.RuntimeParams = map[string]string{"application_name": "ward pgproxy"}
	for k, v := range params {
		c.RuntimeParams[k] = v
	}
	if s.cfg.Writes == WritesReadOnly {
		// A backstop beneath the statement checks: functions that write
		// fail in a read-only transaction.
		c.RuntimeParams["default_transaction_read_only"] = "on"
	}
}

// Serve accepts clients on ln until ctx ends or Close is called.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	s.log.Info("pgproxy listening", "addr", ln.Addr().String(), "upstream", s.cfg.Upstream.Address)

	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			s.log.Error("pgproxy accept failed", "err", err)
			return err
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.log.Warn("pgproxy connection limit reached", "limit", cap(s.slots), "remote", conn.RemoteAddr().String())
			rejectStartup(conn, "53300", "too many connections to ward pgproxy")
			continue
		}
		if !s.track(conn) {
			conn.Close()
			<-s.slots
			return nil
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.slots }()
			defer s.untrack(conn)
			s.handle(ctx, conn)
		}()
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// Close closes every client connection and the catalog pool, and waits
// for the sessions to end.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	sessions := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		sess.closeConns()
	}
	for _, c := range conns {
		c.Close()
	}
	s.wg.Wait()
	s.pool.Close()
}

// schemaChanged empties the caches of catalog lookups, statement analyses
// and maskers, after a statement through the proxy may have changed the
// catalog they rest on (CREATE OR REPLACE VIEW, ALTER TABLE).
func (s *Server) schemaChanged() {
	s.schemaGen.Add(1)
	now := s.clock()
	if c := s.catalog; c != nil {
		c.mu.Lock()
		c.reset(now)
		c.mu.Unlock()
	}
	s.statements.mu.Lock()
	s.statements.reset(now)
	s.statements.mu.Unlock()
	if m := s.maskers; m != nil {
		m.mu.Lock()
		m.reset(now)
		m.mu.Unlock()
	}
}
