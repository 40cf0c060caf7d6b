package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"
)

// ErrUnknownKind is returned for a credential path whose first segment
// names no kind this agent can fetch.
var ErrUnknownKind = errors.New("unknown credential kind")

// kind fetches one sort of credential. A new kind is a type with these
// methods added to kinds. The configuration format stays the same, because
// the kind is the first segment of path.
type kind interface {
	// validate checks the kind-specific fields of a configuration entry.
	validate(cr *Credential) error
	// fields lists the values the kind produces, in write order.
	fields() []string
	hasField(field string) bool
	// suffix is the default file name suffix of a field.
	suffix(field string) string
	// issue obtains a fresh credential from the broker.
	issue(ctx context.Context, b *brokerClient, cr *Credential) (*issued, error)
}

// kinds maps the first segment of a credential path to its kind.
var kinds = map[string]kind{
	"x509":  x509Kind{},
	"jwt":   jwtKind{},
	"db":    dbKind{},
	"vault": vaultKind{},
}

func kindOf(path string) (kind, error) {
	first, _, _ := strings.Cut(path, "/")
	if path == "" {
		return nil, errors.New("path: missing, want x509, x509/<spiffe-id>, jwt, jwt/<spiffe-id>, db/<role> or vault/<path>")
	}
	k, ok := kinds[first]
	if !ok {
		names := make([]string, 0, len(kinds))
		for n := range kinds {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("path %q: %w %q, want one of %s", path, ErrUnknownKind, first, strings.Join(names, ", "))
	}
	return k, nil
}

// issued is one credential as the broker returned it. Values holds its
// fields (PEM text or token) and is never logged; LogValue shows only
// metadata.
type issued struct {
	name      string
	values    map[string][]byte
	leaseID   string
	spiffeID  string
	serial    string
	issuedAt  time.Time
	expiresAt time.Time

	// Set for X.509-SVIDs, for the Workload API and SDS.
	chain  []*x509.Certificate
	key    crypto.Signer
	bundle []*x509.Certificate
}

// LogValue lists what may be logged about a credential: never its values.
func (c *issued) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", c.name),
		slog.String("lease_id", c.leaseID),
		slog.Time("expires_at", c.expiresAt),
	)
}

// lifetime returns the span from issue to expiry.
func (c *issued) lifetime() time.Duration { return c.expiresAt.Sub(c.issuedAt) }

// spiffeTarget returns the SPIFFE ID after "kind/" in path, or "" for the
// agent's own ID.
func spiffeTarget(path, prefix string) (string, error) {
	rest, ok := strings.CutPrefix(path, prefix)
	if !ok {
		return "", nil
	}
	rest = strings.TrimPrefix(rest, "/")
	if rest == "" {
		return "", nil
	}
	u, err := url.Parse(rest)
	if err != nil || u.Scheme != "spiffe" || u.Host == "" {
		return "", fmt.Errorf("path %q: want %s or %s/spiffe://trust-domain/path", path, prefix, prefix)
	}
	return rest, nil
}

type x509Kind struct{}

func (x509Kind) fields() []string { return []string{"key", "cert", "bundle"} }

func (k x509Kind) hasField(f string) bool { return slices.Contains(k.fields(), f) }

func (x509Kind) suffix(field string) string { return field + ".pem" }

func (x509Kind) validate(cr *Credential) error {
	if len(cr.Audience) > 0 {
		return errors.New("audience applies to jwt credentials only")
	}
	_, err := spiffeTarget(cr.Path, "x509")
	return err
}

// x509Response is the broker's response to POST /v1/issue/x509 and the
// authentication endpoints.
type x509Response struct {
	SPIFFEID    string    `json:"spiffe_id"`
	Certificate string    `json:"certificate"`
	Chain       []string  `json:"chain"`
	Bundle      string    `json:"bundle"`
	Serial      string    `json:"serial"`
	LeaseID     string    `json:"lease_id"`
	ExpiresAt   time.Time `json:"expires_at"`
}

func (x509Kind) issue(ctx context.Context, b *brokerClient, cr *Credential) (*issued, error) {
	target, _ := spiffeTarget(cr.Path, "x509")
	key, csr, err := newKeyAndCSR()
	if err != nil {
		return nil, err
	}
	body := map[string]any{"csr": string(csr)}
	if cr.TTL.Duration > 0 {
		body["ttl"] = cr.TTL.Duration.String()
	}
	if target != "" {
		body["spiffe_id"] = target
	}
	var resp x509Response
	if err := b.post(ctx, "/v1/issue/x509", body, &resp); err != nil {
		return nil, err
	}
	return x509Issued(cr.Name, key, resp)
}

// x509Issued checks an X.509 response against the key it was requested
// for and builds the credential.
func x509Issued(name string, key crypto.Signer, resp x509Response) (*issued, error) {
	chain, err := parseCerts([]byte(resp.Certificate))
	if err != nil || len(chain) == 0 {
		return nil, fmt.Errorf("broker returned an invalid certificate: %v", err)
	}
	leaf := chain[0]
	if !publicKeyEqual(leaf.PublicKey, key.Public()) {
		return nil, errors.New("broker returned a certificate for another key")
	}
	bundle, err := parseCerts([]byte(resp.Bundle))
	if err != nil || len(bundle) == 0 {
		return nil, fmt.Errorf("broker returned an invalid bundle: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	clear(keyDER)
	return &issued{
		name: name,
		values: map[string][]byte{
			"key":    keyPEM,
			"cert":   []byte(resp.Certificate),
			"bundle": []byte(resp.Bundle),
		},
		leaseID:   resp.LeaseID,
		spiffeID:  resp.SPIFFEID,
		serial:    resp.Serial,
		issuedAt:  leaf.NotBefore,
		expiresAt: leaf.NotAfter,
		chain:     chain,
		key:       key,
		bundle:    bundle,
	}, nil
}

type jwtKind struct{}

func (jwtKind) fields() []string { return []string{"token"} }

func (k jwtKind) hasField(f string) bool { return f == "token" }

func (jwtKind) suffix(string) string { return "jwt" }

func (jwtKind) validate(cr *Credential) error {
	if len(cr.Audience) == 0 {
		return errors.New("audience: missing, a JWT-SVID needs at least one")
	}
	_, err := spiffeTarget(cr.Path, "jwt")
	return err
}

func (jwtKind) issue(ctx context.Context, b *brokerClient, cr *Credential) (*issued, error) {
	target, _ := spiffeTarget(cr.Path, "jwt")
	return issueJWT(ctx, b, cr.Name, target, cr.Audience, cr.TTL.Duration)
}

func issueJWT(ctx context.Context, b *brokerClient, name, target string, audience []string, ttl time.Duration) (*issued, error) {
	body := map[string]any{"audience": audience}
	if ttl > 0 {
		body["ttl"] = ttl.String()
	}
	if target != "" {
		body["spiffe_id"] = target
	}
	var resp struct {
		SPIFFEID  string    `json:"spiffe_id"`
		Token     string    `json:"token"`
		LeaseID   string    `json:"lease_id"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := b.post(ctx, "/v1/issue/jwt", body, &resp); err != nil {
		return nil, err
	}
	if resp.Token == "" || resp.ExpiresAt.IsZero() {
		return nil, errors.New("broker returned an empty JWT-SVID")
	}
	// The broker's response has no issue time, so the local clock is used.
	// That shifts the renewal point only by the request's latency.
	return &issued{
		name:      name,
		values:    map[string][]byte{"token": []byte(resp.Token)},
		leaseID:   resp.LeaseID,
		spiffeID:  resp.SPIFFEID,
		issuedAt:  time.Now(),
		expiresAt: resp.ExpiresAt,
	}, nil
}

func newKeyAndCSR() (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CSR: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return certs, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
