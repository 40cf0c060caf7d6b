package server

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"ward.dev/ward/internal/store"
	"ward.dev/ward/masking/pgproxy"
)

// openPGProxy prepares the masking proxy when the configuration has a
// pgproxy: section. It decides with the server's own policy, so a reload or
// quarantine reaches it at once, and accepts the logins the broker issues
// with via_proxy as well as those its own section lists.
func (s *Server) openPGProxy() error {
	if !s.cfg.PGProxy.Set() {
		return nil
	}
	path := s.cfg.Path()
	pcfg, err := pgproxy.ParseConfigNode(path, filepath.Dir(path), withDefaultEnvironment(s.cfg.PGProxy.Node, s.cfg.Environment))
	if err != nil {
		return err
	}
	if pcfg.Policy != (pgproxy.PolicyFiles{}) {
		// Accepting the key would let a reader believe those files decide.
		return fmt.Errorf("%s: ward serve decides with its own policy (the policy: section). Remove this key, which only ward pgproxy reads", s.cfg.Where("pgproxy.policy"))
	}
	// Without a key file of its own, the proxy masks with the server's
	// masking key, so its tokens match those of the tokenize API.
	var opts pgproxy.Options
	if pcfg.MaskingKeyFile != "" {
		opts, err = pgproxy.Load(pcfg, s.authz, s.log)
	} else {
		opts, err = pgproxy.LoadWithKeys(pcfg, s.authz, s.log, s.maskKeys)
	}
	if err != nil {
		return err
	}
	opts.Logins = proxyLogins{s: s, fallback: opts.Logins}
	p, err := pgproxy.New(opts)
	if err != nil {
		return err
	}
	s.pgproxy, s.pgproxyAddr, s.pgproxyDB = p, pcfg.Listen, pcfg.Upstream.Database
	s.leases.Register("proxy", proxyLoginRevoker{s}, proxyLoginRevoker{s})
	return nil
}

// withDefaultEnvironment returns the pgproxy section with environment set to
// the server's own when the section does not name one.
func withDefaultEnvironment(n *yaml.Node, env string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return n
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "environment" {
			return n
		}
	}
	c := *n
	c.Content = append(append([]*yaml.Node(nil), n.Content...),
		&yaml.Node{Kind: yaml.ScalarNode, Value: "environment", Line: n.Line},
		&yaml.Node{Kind: yaml.ScalarNode, Value: env, Line: n.Line})
	return &c
}

func (s *Server) servePGProxy(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.pgproxyAddr)
	if err != nil {
		return fmt.Errorf("listen on %s for the PostgreSQL proxy: %w", s.pgproxyAddr, err)
	}
	s.pgproxyAddr = ln.Addr().String()
	go func() {
		if err := s.pgproxy.Serve(ctx, ln); err != nil && ctx.Err() == nil {
			s.log.Error("PostgreSQL proxy stopped", "error", err)
		}
	}()
	return nil
}

// proxyLogins looks logins up in the store, then in the proxy's own list.
type proxyLogins struct {
	s        *Server
	fallback pgproxy.LoginStore
}

func (p proxyLogins) Lookup(ctx context.Context, user string) (pgproxy.Login, error) {
	l, err := p.s.store.ProxyLogin(ctx, user, p.s.now())
	if errors.Is(err, store.ErrNotFound) {
		if p.fallback != nil {
			return p.fallback.Lookup(ctx, user)
		}
		return pgproxy.Login{}, pgproxy.ErrNoLogin
	}
	if err != nil {
		return pgproxy.Login{}, err
	}
	var v pgproxy.Verifier
	if err := json.Unmarshal([]byte(l.Verifier), &v); err != nil {
		return pgproxy.Login{}, fmt.Errorf("decode verifier of proxy login %s: %w", user, err)
	}
	return pgproxy.Login{SPIFFEID: l.SPIFFEID, Verifier: &v, Expires: l.ExpiresAt}, nil
}

type proxyLoginRevoker struct{ s *Server }

// Revoke deletes the login and ends its open sessions, so a revoked or
// expired login stops reading at once, not at its next connection.
func (r proxyLoginRevoker) Revoke(ctx context.Context, l store.Lease) error {
	if err := r.s.store.DeleteProxyLogin(ctx, l.Meta["username"]); err != nil {
		return err
	}
	r.s.pgproxy.EndSessions(l.Meta["username"], "")
	return nil
}

func (r proxyLoginRevoker) Renew(ctx context.Context, l store.Lease, expiresAt time.Time) error {
	return r.s.store.ExtendProxyLogin(ctx, l.Meta["username"], expiresAt)
}

var lowerB32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// issueProxyLogin creates a login that works only at the masking proxy. The
// proxy keeps the upstream credentials, and masks values as the policy for
// the caller's SPIFFE ID decides.
func (s *Server) issueProxyLogin(req *request, role, object string, ttl time.Duration) (any, *apiError) {
	start := time.Now()
	if err := s.require(req, object, "issue"); err != nil {
		return nil, err
	}
	raw := make([]byte, 10)
	pw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return nil, internal("login generation", err)
	}
	if _, err := rand.Read(pw); err != nil {
		return nil, internal("login generation", err)
	}
	username := "wardp_" + strings.ReplaceAll(role, "-", "_") + "_" + lowerB32.EncodeToString(raw)
	password := encodeB64(pw)
	clear(pw)
	v, err := pgproxy.NewVerifier([]byte(password), rand.Reader, pgproxy.DefaultSCRAMIterations)
	if err != nil {
		return nil, internal("login generation", err)
	}
	vjson, _ := json.Marshal(v)

	ctx := req.r.Context()
	now := s.now()
	leaseID, err := newLeaseID(object)
	if err != nil {
		return nil, internal("lease id", err)
	}
	l := store.Lease{
		ID: leaseID, Kind: "proxy", Object: object, Subject: req.caller.id, IssuedAt: now,
		ExpiresAt: now.Add(ttl), MaxExpiresAt: now.Add(s.cfg.TTL.Max.Duration), Renewable: true,
		Meta: map[string]string{"username": username, "via": "pgproxy"},
	}
	// The lease is written first: a login without a lease would never be
	// swept, while a lease without its login is harmless.
	if aerr := s.createLease(ctx, l); aerr != nil {
		return nil, aerr
	}
	if err := s.store.PutProxyLogin(ctx, store.ProxyLogin{Username: username, SPIFFEID: req.caller.id, Verifier: string(vjson), ExpiresAt: l.ExpiresAt}); err != nil {
		return nil, unavailable("store unavailable, no login created", err)
	}

	req.rec.LeaseID = leaseID
	req.rec.HMACs = map[string]string{"password": s.audit.HMAC([]byte(password))}
	s.met.issued("proxy", time.Since(start))
	dsn := (&url.URL{Scheme: "postgres", User: url.User(username), Host: s.pgproxyAddr, Path: "/" + s.pgproxyDatabase()}).String()
	return dbResponse{Username: username, Password: password, DSN: dsn, LeaseID: leaseID, ExpiresAt: l.ExpiresAt}, nil
}

// pgproxyDatabase is the database the proxy serves, which clients name in
// their DSN.
func (s *Server) pgproxyDatabase() string { return s.pgproxyDB }
