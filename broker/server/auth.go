package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
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

	auth := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || token == "" {
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

// parseSPIFFEID checks a SPIFFE ID: scheme spiffe, the server's trust
// domain, a non-empty path, and no query, fragment, user info or port.
func (s *Server) parseSPIFFEID(raw string) (*url.URL, string) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, "invalid SPIFFE ID " + quote(raw)
	case u.Scheme != "spiffe":
		return nil, "invalid SPIFFE ID " + quote(raw) + ": scheme must be spiffe"
	case u.Host != s.cfg.TrustDomain:
		return nil, "SPIFFE ID " + quote(raw) + " is outside trust domain " + s.cfg.TrustDomain
	case u.Path == "" || u.Path == "/" || strings.HasSuffix(u.Path, "/") || strings.Contains(u.Path, "//"):
		return nil, "invalid SPIFFE ID " + quote(raw) + ": path must be non-empty without empty segments"
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Port() != "" || u.Opaque != "":
		return nil, "invalid SPIFFE ID " + quote(raw) + ": query, fragment, user info and port are not allowed"
	case strings.Contains(u.Path, "/./") || strings.Contains(u.Path, "/../") || strings.HasSuffix(u.Path, "/.."):
		return nil, "invalid SPIFFE ID " + quote(raw) + ": dot segments are not allowed"
	}
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
