// Package k8sauth verifies Kubernetes service-account tokens (projected,
// audience-bound JWTs as issued by the TokenRequest API) so that a pod can
// authenticate to ward as its service account.
//
// Two verifiers are offered: JWKS checks the token's signature locally
// against the cluster's JSON Web Key Set (a file, or the issuer's
// /openid/v1/jwks URL) and its iss, aud, exp, nbf and iat claims (RFC 7519).
// TokenReview sends the token to the API server (authentication.k8s.io/v1),
// which also rejects tokens of deleted pods and service accounts.
//
// Security contract: a token is accepted only with the configured audience,
// an expiry no further than the leeway in the past, and a signature by a key
// in the set (RS256 or ES256; "none" and HMAC are rejected). Tokens are
// bounded in size and never logged or included in errors.
package k8sauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors callers branch on.
var (
	// ErrInvalidToken is a token that is malformed, unsigned, wrongly
	// signed, expired, or for another audience or issuer.
	ErrInvalidToken = errors.New("invalid service-account token")
	// ErrUnavailable is a failure to reach the key set or the API server;
	// the token was not judged.
	ErrUnavailable = errors.New("token verification unavailable")
)

// MaxTokenSize bounds a token; projected tokens are about 1 KiB.
const MaxTokenSize = 16 << 10

// Leeway is the clock skew tolerated on exp, nbf and iat.
const Leeway = 30 * time.Second

// Identity is the service account a token was issued to.
type Identity struct {
	Namespace      string
	ServiceAccount string
	// PodName and PodUID are set for tokens bound to a pod.
	PodName string
	PodUID  string
	Expiry  time.Time
}

// Verifier checks a service-account token. Implementations are safe for
// concurrent use.
type Verifier interface {
	Verify(ctx context.Context, token string) (Identity, error)
}

// SPIFFEID returns spiffe://<trustDomain>/ns/<namespace>/sa/<name>, the
// conventional SPIFFE ID of a Kubernetes service account.
func SPIFFEID(trustDomain string, id Identity) string {
	return "spiffe://" + trustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// parseUsername splits system:serviceaccount:<namespace>:<name>.
func parseUsername(username string) (namespace, name string, ok bool) {
	rest, found := strings.CutPrefix(username, "system:serviceaccount:")
	if !found {
		return "", "", false
	}
	namespace, name, found = strings.Cut(rest, ":")
	if !found || !validName(namespace) || !validName(name) {
		return "", "", false
	}
	return namespace, name, true
}

// validName accepts a DNS-1123 label or subdomain, which namespace and
// service account names are, so they are safe as SPIFFE ID path segments.
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i, c := range s {
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && c != '-' && c != '.' {
			return false
		}
		if (i == 0 || i == len(s)-1) && !alnum {
			return false
		}
	}
	return true
}

func checkSize(token string) error {
	if token == "" {
		return fmt.Errorf("%w: empty", ErrInvalidToken)
	}
	if len(token) > MaxTokenSize {
		return fmt.Errorf("%w: larger than %d bytes", ErrInvalidToken, MaxTokenSize)
	}
	return nil
}

// Settings selects and configures a verifier. A configuration struct with
// the same fields (YAML tags aside) converts to it directly.
type Settings struct {
	// Audience ward requires in every token; "ward" when empty.
	Audience string
	// TokenReview selects the TokenReview API; otherwise the JWKS is used.
	TokenReview bool
	// Issuer and exactly one of JWKSFile and JWKSURL configure JWKS.
	Issuer   string
	JWKSFile string
	JWKSURL  string
	// APIServer is the TokenReview endpoint; in-cluster by default.
	APIServer string
	// CAFile and BearerTokenFile authenticate the JWKS URL or API server.
	CAFile          string
	BearerTokenFile string
}

// New returns the verifier the settings select.
func New(ctx context.Context, s Settings) (Verifier, error) {
	if s.Audience == "" {
		s.Audience = "ward"
	}
	if s.TokenReview {
		return NewTokenReview(TokenReviewConfig{APIServer: s.APIServer, Audience: s.Audience, CAFile: s.CAFile, BearerTokenFile: s.BearerTokenFile})
	}
	return NewJWKS(ctx, JWKSConfig{Issuer: s.Issuer, Audience: s.Audience, File: s.JWKSFile, URL: s.JWKSURL, CAFile: s.CAFile, BearerTokenFile: s.BearerTokenFile})
}
