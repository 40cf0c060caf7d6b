package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"strings"

	"ward.dev/ward/broker/ca"
)

// caller is an authenticated client.
type caller struct {
	id     string // SPIFFE ID
	method string // "certificate" or "token"
}

// authenticate identifies the caller from its verified TLS client
// certificate or its bearer token. It returns false when neither is present
// or valid.
func (s *Server) authenticate(r *http.Request) (caller, bool) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		leaf := r.TLS.VerifiedChains[0][0]
		if _, revoked := s.revoked.Load(ca.SerialHex(leaf)); revoked {
			return caller{}, false
		}
		if len(leaf.URIs) != 1 || leaf.URIs[0].Scheme != "spiffe" {
			return caller{}, false
		}
		return caller{id: leaf.URIs[0].String(), method: "certificate"}, true
	}

	// The scheme name is case-insensitive (RFC 9110, section 11.1).
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return caller{}, false
	}
	// Comparing fixed-size digests in constant time reveals neither the
	// token nor its length through timing.
	digest := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(digest[:], s.adminDigest[:]) == 1 {
		return caller{id: s.adminID, method: "token"}, true
	}
	return caller{}, false
}

// maxSPIFFEID is the longest SPIFFE ID accepted, the URI limit the SPIFFE
// ID specification sets (2048 bytes).
const maxSPIFFEID = 2048

// parseSPIFFEID checks a SPIFFE ID against the SPIFFE ID specification, as
// go-spiffe implements it. The trust domain is lower case, and path segments
// hold only letters, digits, '.', '-' and '_', with no percent-encoding and
// no dot segments. It also requires the server's trust domain and a path.
func (s *Server) parseSPIFFEID(raw string) (*url.URL, string) {
	if len(raw) > maxSPIFFEID {
		return nil, fmt.Sprintf("invalid SPIFFE ID: %d bytes, at most %d allowed", len(raw), maxSPIFFEID)
	}
	id, err := spiffeid.FromString(raw)
	if err != nil {
		return nil, "invalid SPIFFE ID " + quote(raw) + ": " + err.Error()
	}
	if id.TrustDomain().Name() != s.cfg.TrustDomain {
		return nil, "SPIFFE ID " + quote(raw) + " is outside trust domain " + s.cfg.TrustDomain
	}
	if id.Path() == "" {
		return nil, "invalid SPIFFE ID " + quote(raw) + ": a workload ID needs a path"
	}
	u := id.URL()
	return u, ""
}

func mustSPIFFE(raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	return u
}

func newP256Key() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func encodeB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
