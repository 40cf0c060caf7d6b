package xds

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// tlsSource supplies the ADS endpoint's TLS configuration: TLS 1.3 only, a
// client certificate chaining to the current trust bundle and carrying one
// SPIFFE ID in the trust domain, and a serving certificate renewed at half
// life. It is safe for concurrent use.
type tlsSource struct {
	issuer      Issuer
	serverID    string
	hosts       []string
	trustDomain spiffeid.TrustDomain
	override    func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	ttl         time.Duration
	now         func() time.Time

	mu        sync.Mutex
	cert      *tls.Certificate
	renewAt   time.Time
	bundle    []byte
	clientCAs *x509.CertPool
}

func newTLSSource(issuer Issuer, serverID string, hosts []string, td spiffeid.TrustDomain, override func(*tls.ClientHelloInfo) (*tls.Certificate, error), ttl time.Duration, now func() time.Time) *tlsSource {
	return &tlsSource{issuer: issuer, serverID: serverID, hosts: hosts, trustDomain: td, override: override, ttl: ttl, now: now}
}

func (t *tlsSource) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			pool, err := t.pool()
			if err != nil {
				return nil, err
			}
			return &tls.Config{
				MinVersion:            tls.VersionTLS13,
				ClientAuth:            tls.RequireAndVerifyClientCert,
				ClientCAs:             pool,
				GetCertificate:        t.certificate,
				VerifyPeerCertificate: t.verifyPeer,
				NextProtos:            []string{"h2"},
			}, nil
		},
	}
}

// pool parses the trust bundle again only when its bytes changed, so a CA
// rotation takes effect on the next handshake.
func (t *tlsSource) pool() (*x509.CertPool, error) {
	bundle := t.issuer.TrustBundlePEM()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.clientCAs != nil && bytes.Equal(bundle, t.bundle) {
		return t.clientCAs, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		return nil, errors.New("xds: trust bundle contains no certificate")
	}
	t.bundle, t.clientCAs = bytes.Clone(bundle), pool
	return pool, nil
}

func (t *tlsSource) verifyPeer(_ [][]byte, chains [][]*x509.Certificate) error {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return errors.New("xds: no verified client certificate chain")
	}
	leaf := chains[0][0]
	if len(leaf.URIs) != 1 {
		return fmt.Errorf("xds: client certificate has %d URI SANs, want exactly one SPIFFE ID", len(leaf.URIs))
	}
	id, err := spiffeid.FromURI(leaf.URIs[0])
	if err != nil {
		return fmt.Errorf("xds: client certificate URI SAN: %w", err)
	}
	if id.TrustDomain() != t.trustDomain {
		return fmt.Errorf("xds: client SPIFFE ID %q is outside trust domain %q", id, t.trustDomain)
	}
	return nil
}

func (t *tlsSource) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if t.override != nil {
		return t.override(hello)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cert != nil && t.now().Before(t.renewAt) {
		return t.cert, nil
	}
	ctx, cancel := context.WithTimeout(hello.Context(), 10*time.Second)
	defer cancel()
	var chain, key []byte
	var expires time.Time
	var err error
	if serving, ok := t.issuer.(ServingIssuer); ok {
		chain, key, expires, err = serving.IssueServingSVID(ctx, t.serverID, t.hosts, t.ttl)
	} else {
		chain, key, expires, err = t.issuer.IssueSVID(ctx, t.serverID, t.ttl)
	}
	if err != nil {
		return nil, fmt.Errorf("xds: issue serving certificate for %q: %w", t.serverID, err)
	}
	cert, err := tls.X509KeyPair(chain, key)
	clear(key)
	if err != nil {
		return nil, fmt.Errorf("xds: serving certificate for %q: %w", t.serverID, err)
	}
	t.cert = &cert
	t.renewAt = halfLife(t.now(), expires)
	return t.cert, nil
}

func halfLife(issued, expires time.Time) time.Time {
	return issued.Add(expires.Sub(issued) / 2)
}

// issued is an SVID held for an Envoy node's SDS secret.
type issued struct {
	cert    svid
	renewAt time.Time
}

// svidFor returns the node's SVID, issuing a new one when none is held or
// the held one has passed half its lifetime. Only Rebuild calls it, under
// buildMu.
func (s *Server) svidFor(ctx context.Context, id string) (svid, error) {
	s.mu.Lock()
	cur := s.svids[id]
	s.mu.Unlock()
	if cur != nil && s.now().Before(cur.renewAt) {
		return cur.cert, nil
	}

	chain, key, expires, err := s.cfg.Issuer.IssueSVID(ctx, id, s.cfg.SVIDTTL)
	if err != nil {
		return svid{}, fmt.Errorf("issue SVID for %q: %w", id, err)
	}
	next := &issued{cert: svid{chain: chain, key: key}, renewAt: halfLife(s.now(), expires)}
	s.mu.Lock()
	s.svids[id] = next
	s.mu.Unlock()
	return next.cert, nil
}

// untilRenewal returns the delay until the earliest SVID reaches half life,
// at most an hour.
func (s *Server) untilRenewal() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	wait := time.Hour
	now := s.now()
	for _, is := range s.svids {
		if d := is.renewAt.Sub(now); d < wait {
			wait = d
		}
	}
	return max(wait, time.Second)
}
