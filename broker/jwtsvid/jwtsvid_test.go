package jwtsvid_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/broker/jwtsvid"
)

func TestSignVerifiesWithJWKS(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	iss, err := jwtsvid.New(key, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	token, exp, err := iss.Sign("spiffe://ward.test/a", []string{"orders"}, 5*time.Minute, "id1")
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(now.Add(5 * time.Minute)) {
		t.Errorf("expiry = %s, want %s", exp, now.Add(5*time.Minute))
	}

	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	enc := base64.RawURLEncoding
	var header map[string]string
	raw, _ := enc.DecodeString(parts[0])
	json.Unmarshal(raw, &header)
	jwk := iss.JWKS()["keys"][0]
	if header["alg"] != "ES256" || header["kid"] != jwk.KeyID {
		t.Errorf("header = %v, want alg ES256 and kid %s", header, jwk.KeyID)
	}

	// Verify with the public key rebuilt from the JWK Set, as a relying party would.
	x, _ := enc.DecodeString(jwk.X)
	y, _ := enc.DecodeString(jwk.Y)
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	sig, _ := enc.DecodeString(parts[2])
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Fatal("signature does not verify with the JWKS key")
	}

	var claims jwtsvid.Claims
	raw, _ = enc.DecodeString(parts[1])
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Subject != "spiffe://ward.test/a" || claims.Audience[0] != "orders" || claims.Expiry != exp.Unix() {
		t.Errorf("claims = %+v", claims)
	}
}

func TestNewRejectsNonP256(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := jwtsvid.New(key, time.Now); err == nil {
		t.Error("New(P-384 key) = nil error, want rejection")
	}
}
