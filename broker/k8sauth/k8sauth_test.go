package k8sauth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"ward.dev/ward/broker/k8sauth"
)

const (
	testIssuer   = "https://kubernetes.default.svc.cluster.local"
	testAudience = "ward"
)

// cluster is a fake cluster signer: a key pair, its JWKS file and a clock.
type cluster struct {
	key  crypto.Signer
	kid  string
	alg  jose.SignatureAlgorithm
	jwks string
	now  time.Time
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{key: key, kid: "k1", alg: jose.RS256, now: time.Unix(1_800_000_000, 0)}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: c.kid, Algorithm: string(jose.RS256), Use: "sig"}}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	c.jwks = filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(c.jwks, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// tokenSpec describes a token to mint; zero fields take valid defaults.
type tokenSpec struct {
	issuer, subject, namespace, account string
	audience                            []string
	expiry                              time.Duration // from now; 0 means 10m
	noExpiry                            bool
	notBefore                           time.Duration
	noKubernetes                        bool
	key                                 crypto.Signer
	kid                                 string
	alg                                 jose.SignatureAlgorithm
}

func (c *cluster) mint(t testing.TB, s tokenSpec) string {
	t.Helper()
	if s.issuer == "" {
		s.issuer = testIssuer
	}
	if s.namespace == "" {
		s.namespace = "shop"
	}
	if s.account == "" {
		s.account = "web"
	}
	if s.subject == "" {
		s.subject = "system:serviceaccount:" + s.namespace + ":" + s.account
	}
	if s.audience == nil {
		s.audience = []string{testAudience}
	}
	if s.expiry == 0 {
		s.expiry = 10 * time.Minute
	}
	if s.key == nil {
		s.key = c.key
	}
	if s.kid == "" {
		s.kid = c.kid
	}
	if s.alg == "" {
		s.alg = c.alg
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: jose.JSONWebKey{Key: s.key, KeyID: s.kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	std := jwt.Claims{
		Issuer: s.issuer, Subject: s.subject, Audience: s.audience,
		IssuedAt: jwt.NewNumericDate(c.now), NotBefore: jwt.NewNumericDate(c.now.Add(s.notBefore)),
	}
	if !s.noExpiry {
		std.Expiry = jwt.NewNumericDate(c.now.Add(s.expiry))
	}
	priv := map[string]any{}
	if !s.noKubernetes {
		priv["kubernetes.io"] = map[string]any{
			"namespace":      s.namespace,
			"serviceaccount": map[string]string{"name": s.account, "uid": "5d3e9c1a-0000-4000-8000-000000000001"},
			"pod":            map[string]string{"name": "web-abc", "uid": "5d3e9c1a-0000-4000-8000-000000000002"},
		}
	}
	token, err := jwt.Signed(signer).Claims(std).Claims(priv).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func (c *cluster) verifier(t testing.TB) *k8sauth.JWKS {
	t.Helper()
	v, err := k8sauth.NewJWKS(context.Background(), k8sauth.JWKSConfig{
		Issuer: testIssuer, Audience: testAudience, File: c.jwks,
		Now: func() time.Time { return c.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestJWKSVerify(t *testing.T) {
	c := newCluster(t)
	v := c.verifier(t)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	id, err := v.Verify(context.Background(), c.mint(t, tokenSpec{}))
	if err != nil {
		t.Fatalf("Verify(valid) = %v", err)
	}
	if id.Namespace != "shop" || id.ServiceAccount != "web" || id.PodName != "web-abc" {
		t.Errorf("Verify(valid) = %+v, want shop/web from pod web-abc", id)
	}
	if got := k8sauth.SPIFFEID("ward.test", id); got != "spiffe://ward.test/ns/shop/sa/web" {
		t.Errorf("SPIFFEID = %s, want spiffe://ward.test/ns/shop/sa/web", got)
	}

	tests := []struct {
		name string
		spec tokenSpec
		want string
	}{
		{"wrong audience", tokenSpec{audience: []string{"vault"}}, "audience"},
		{"expired", tokenSpec{expiry: -time.Minute}, "expired"},
		{"expired within leeway", tokenSpec{expiry: -10 * time.Second}, ""},
		{"no expiry", tokenSpec{noExpiry: true}, "no expiry"},
		{"not yet valid", tokenSpec{notBefore: 5 * time.Minute}, "not valid yet"},
		{"wrong issuer", tokenSpec{issuer: "https://evil.example"}, "issuer"},
		{"other key same kid", tokenSpec{key: otherKey}, "signature"},
		{"unknown kid", tokenSpec{key: otherKey, kid: "k2"}, "unknown key"},
		{"EC key not in set", tokenSpec{key: ecKey, alg: jose.ES256}, "signature"},
		{"not a service account", tokenSpec{subject: "alice"}, "not a service account"},
		{"missing kubernetes claim", tokenSpec{noKubernetes: true}, "kubernetes.io"},
		{"claim disagrees with subject", tokenSpec{subject: "system:serviceaccount:kube-system:admin"}, "inconsistent"},
		{"bad namespace name", tokenSpec{namespace: "Shop/../x"}, "not a service account"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), c.mint(t, tc.spec))
			if tc.want == "" {
				if err != nil {
					t.Errorf("Verify = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, k8sauth.ErrInvalidToken) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %v, want ErrInvalidToken mentioning %q", err, tc.want)
			}
		})
	}
}

func TestJWKSRejectsMalformed(t *testing.T) {
	c := newCluster(t)
	v := c.verifier(t)
	valid := c.mint(t, tokenSpec{})
	parts := strings.Split(valid, ".")
	none := `eyJhbGciOiJub25lIn0.` + parts[1] + `.`
	hs := `eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIn0.` + parts[1] + `.` + parts[2]
	tests := map[string]string{
		"empty":             "",
		"garbage":           "not-a-jwt",
		"alg none":          none,
		"alg HS256":         hs,
		"truncated":         valid[:len(valid)-10],
		"payload bit flip":  parts[0] + "." + flip(parts[1]) + "." + parts[2],
		"too large":         strings.Repeat("a", k8sauth.MaxTokenSize+1),
		"two dots only":     "..",
		"signature removed": parts[0] + "." + parts[1] + ".",
	}
	for name, token := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := v.Verify(context.Background(), token); !errors.Is(err, k8sauth.ErrInvalidToken) {
				t.Errorf("Verify(%s) = %v, want ErrInvalidToken", name, err)
			}
		})
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[5] == 'A' {
		b[5] = 'B'
	} else {
		b[5] = 'A'
	}
	return string(b)
}

func TestNewJWKSRejectsBadConfig(t *testing.T) {
	c := newCluster(t)
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"keys": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  k8sauth.JWKSConfig
	}{
		{"no audience", k8sauth.JWKSConfig{Issuer: testIssuer, File: c.jwks}},
		{"no source", k8sauth.JWKSConfig{Issuer: testIssuer, Audience: testAudience}},
		{"both sources", k8sauth.JWKSConfig{Issuer: testIssuer, Audience: testAudience, File: c.jwks, URL: "https://x"}},
		{"http URL", k8sauth.JWKSConfig{Issuer: testIssuer, Audience: testAudience, URL: "http://x"}},
		{"empty set", k8sauth.JWKSConfig{Issuer: testIssuer, Audience: testAudience, File: bad}},
		{"missing file", k8sauth.JWKSConfig{Issuer: testIssuer, Audience: testAudience, File: bad + ".nope"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := k8sauth.NewJWKS(context.Background(), tc.cfg); err == nil {
				t.Errorf("NewJWKS(%s) = nil error, want one", tc.name)
			}
		})
	}
}

func FuzzJWKSVerify(f *testing.F) {
	c := newCluster(f)
	v := c.verifier(f)
	f.Add(c.mint(f, tokenSpec{}))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.Verify(context.Background(), token)
		if err == nil && (id.Namespace == "" || id.ServiceAccount == "") {
			t.Fatalf("Verify accepted a token without a service account: %+v", id)
		}
		if err != nil && !errors.Is(err, k8sauth.ErrInvalidToken) {
			t.Fatalf("Verify = %v, want ErrInvalidToken for untrusted input", err)
		}
	})
}

func TestNewSelectsVerifier(t *testing.T) {
	c := newCluster(t)
	v, err := k8sauth.New(context.Background(), k8sauth.Settings{Issuer: testIssuer, JWKSFile: c.jwks})
	if err != nil {
		t.Fatalf("New(JWKS) = %v", err)
	}
	if _, ok := v.(*k8sauth.JWKS); !ok {
		t.Errorf("New(JWKS) = %T, want *k8sauth.JWKS", v)
	}
	_, dir := fakeAPIServer(t, false)
	v, err = k8sauth.New(context.Background(), k8sauth.Settings{TokenReview: true, APIServer: "https://127.0.0.1:1", CAFile: filepath.Join(dir, "ca.crt"), BearerTokenFile: filepath.Join(dir, "token")})
	if err != nil {
		t.Fatalf("New(TokenReview) = %v", err)
	}
	if _, ok := v.(*k8sauth.TokenReview); !ok {
		t.Errorf("New(TokenReview) = %T, want *k8sauth.TokenReview", v)
	}
	if _, err := k8sauth.New(context.Background(), k8sauth.Settings{Issuer: testIssuer}); err == nil {
		t.Error("New without a JWKS source = nil error, want one")
	}
}
