// Package jwtsvid issues JWT-SVIDs (SPIFFE JWT workload identities, signed
// JWS in compact form, RFC 7515 and RFC 7519) and publishes the verification
// keys as a JWK Set (RFC 7517).
//
// Tokens are signed with ES256 (ECDSA P-256 with SHA-256, RFC 7518 section
// 3.4) by any crypto.Signer, so the key may live in an HSM. The signing key
// and issued tokens are never logged.
package jwtsvid

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"
)

// Issuer signs JWT-SVIDs. It is safe for concurrent use when its Signer is.
type Issuer struct {
	signer crypto.Signer
	pub    *ecdsa.PublicKey
	keyID  string
	rand   io.Reader
	now    func() time.Time
}

// New returns an Issuer for an ECDSA P-256 signer.
func New(signer crypto.Signer, now func() time.Time) (*Issuer, error) {
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("jwtsvid: signing key must be ECDSA P-256 for ES256")
	}
	return &Issuer{signer: signer, pub: pub, keyID: thumbprint(pub), rand: rand.Reader, now: now}, nil
}

// Claims are the registered claims of a JWT-SVID.
type Claims struct {
	Subject  string   `json:"sub"`
	Audience []string `json:"aud"`
	Expiry   int64    `json:"exp"`
	IssuedAt int64    `json:"iat"`
	Issuer   string   `json:"iss,omitempty"`
	JWTID    string   `json:"jti,omitempty"`
}

// Sign returns a compact JWS for subject and audience, valid for ttl.
func (i *Issuer) Sign(subject string, audience []string, ttl time.Duration, jwtID string) (token string, expiresAt time.Time, err error) {
	now := i.now().UTC().Truncate(time.Second)
	expiresAt = now.Add(ttl)
	header, err := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": i.keyID})
	if err != nil {
		return "", time.Time{}, err
	}
	claims, err := json.Marshal(Claims{
		Subject: subject, Audience: audience, Expiry: expiresAt.Unix(), IssuedAt: now.Unix(), JWTID: jwtID,
	})
	if err != nil {
		return "", time.Time{}, err
	}

	enc := base64.RawURLEncoding
	signingInput := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	digest := sha256.Sum256([]byte(signingInput))
	der, err := i.signer.Sign(i.rand, digest[:], crypto.SHA256)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("jwtsvid: sign: %w", err)
	}
	raw, err := rawSignature(der)
	if err != nil {
		return "", time.Time{}, err
	}
	return signingInput + "." + enc.EncodeToString(raw), expiresAt, nil
}

// rawSignature converts an ASN.1 ECDSA signature to the fixed-size R||S
// form that JWS uses for ES256.
func rawSignature(der []byte) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &sig); err != nil || len(rest) > 0 {
		return nil, errors.New("jwtsvid: signer returned a malformed ECDSA signature")
	}
	out := make([]byte, 64)
	sig.R.FillBytes(out[:32])
	sig.S.FillBytes(out[32:])
	return out, nil
}

// JWK is one public key of a JWK Set.
type JWK struct {
	KeyType string `json:"kty"`
	Curve   string `json:"crv"`
	X       string `json:"x"`
	Y       string `json:"y"`
	KeyID   string `json:"kid"`
	Use     string `json:"use"`
	Alg     string `json:"alg"`
}

// JWKS returns the JWK Set with the verification key.
func (i *Issuer) JWKS() map[string][]JWK {
	enc := base64.RawURLEncoding
	x, y := make([]byte, 32), make([]byte, 32)
	i.pub.X.FillBytes(x)
	i.pub.Y.FillBytes(y)
	return map[string][]JWK{"keys": {{
		KeyType: "EC", Curve: "P-256", X: enc.EncodeToString(x), Y: enc.EncodeToString(y),
		KeyID: i.keyID, Use: "jwt-svid", Alg: "ES256",
	}}}
}

// thumbprint returns the RFC 7638 JWK thumbprint of an EC P-256 key.
func thumbprint(pub *ecdsa.PublicKey) string {
	enc := base64.RawURLEncoding
	x, y := make([]byte, 32), make([]byte, 32)
	pub.X.FillBytes(x)
	pub.Y.FillBytes(y)
	// RFC 7638 fixes the member order (lexicographic) and forbids white space.
	canonical := `{"crv":"P-256","kty":"EC","x":"` + enc.EncodeToString(x) + `","y":"` + enc.EncodeToString(y) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return enc.EncodeToString(sum[:])
}
