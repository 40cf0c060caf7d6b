package k8sauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// maxJWKSSize bounds a fetched or read key set.
const maxJWKSSize = 1 << 20

// jwksMinRefresh is how often at most a key set URL is fetched again for a
// key ID it does not contain (the cluster rotated its signing key).
const jwksMinRefresh = time.Minute

// JWKSConfig configures a JWKS verifier.
type JWKSConfig struct {
	// Issuer is the cluster's service-account issuer (the iss claim), such
	// as https://kubernetes.default.svc.cluster.local.
	Issuer string
	// Audience is the audience ward requires in aud.
	Audience string
	// File is a JWKS document on disk, or URL one to fetch; exactly one.
	File string
	URL  string
	// CAFile verifies the URL's server; BearerTokenFile, when set, is sent
	// as the Authorization header (the API server's /openid/v1/jwks needs
	// an authenticated caller unless anonymous access is granted).
	CAFile          string
	BearerTokenFile string
	// Now is the clock; time.Now by default.
	Now func() time.Time
}

// JWKS verifies tokens against a JSON Web Key Set. It is safe for
// concurrent use.
type JWKS struct {
	cfg  JWKSConfig
	http *http.Client

	mu      sync.Mutex
	keys    jose.JSONWebKeySet
	fetched time.Time
}

var _ Verifier = (*JWKS)(nil)

// NewJWKS loads the key set once, so a wrong file or URL fails at start.
func NewJWKS(ctx context.Context, cfg JWKSConfig) (*JWKS, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("k8sauth: issuer and audience are required")
	}
	if (cfg.File == "") == (cfg.URL == "") {
		return nil, errors.New("k8sauth: set exactly one of the JWKS file and URL")
	}
	if cfg.URL != "" && !strings.HasPrefix(cfg.URL, "https://") {
		return nil, fmt.Errorf("k8sauth: invalid JWKS URL %q, want https://", cfg.URL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &JWKS{cfg: cfg}
	if cfg.URL != "" {
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pemBytes, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("k8sauth: read CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pemBytes) {
				return nil, fmt.Errorf("k8sauth: CA file %s contains no PEM certificate", cfg.CAFile)
			}
			tlsCfg.RootCAs = pool
		}
		v.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	}
	if err := v.reload(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// reload reads the file or fetches the URL.
func (v *JWKS) reload(ctx context.Context) error {
	var data []byte
	var err error
	if v.cfg.File != "" {
		data, err = readBounded(v.cfg.File)
	} else {
		data, err = v.fetch(ctx)
	}
	if err != nil {
		return fmt.Errorf("%w: JWKS: %v", ErrUnavailable, err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return fmt.Errorf("%w: JWKS is not a JSON Web Key Set: %v", ErrUnavailable, err)
	}
	if len(set.Keys) == 0 {
		return fmt.Errorf("%w: JWKS has no keys", ErrUnavailable)
	}
	v.mu.Lock()
	v.keys, v.fetched = set, v.cfg.Now()
	v.mu.Unlock()
	return nil
}

func (v *JWKS) fetch(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.URL, nil)
	if err != nil {
		return nil, err
	}
	if v.cfg.BearerTokenFile != "" {
		token, err := readBounded(v.cfg.BearerTokenFile)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	resp, err := v.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", v.cfg.URL, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxJWKSSize {
		return nil, fmt.Errorf("JWKS larger than %d bytes", maxJWKSSize)
	}
	return data, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJWKSSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxJWKSSize {
		return nil, fmt.Errorf("%s larger than %d bytes", path, maxJWKSSize)
	}
	return data, nil
}

// kubernetesClaims are the claims Kubernetes adds under "kubernetes.io".
type kubernetesClaims struct {
	Namespace      string `json:"namespace"`
	ServiceAccount struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"serviceaccount"`
	Pod *struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"pod"`
}

// Verify checks the token's signature, issuer, audience and times, and
// returns the service account it names.
func (v *JWKS) Verify(ctx context.Context, token string) (Identity, error) {
	if err := checkSize(token); err != nil {
		return Identity{}, err
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if len(tok.Headers) != 1 {
		return Identity{}, fmt.Errorf("%w: want exactly one signature", ErrInvalidToken)
	}
	kid := tok.Headers[0].KeyID

	key, ok := v.key(kid)
	if !ok && v.cfg.URL != "" && v.mayRefresh() {
		// The cluster may have rotated its key since the last fetch.
		if err := v.reload(ctx); err != nil {
			return Identity{}, err
		}
		key, ok = v.key(kid)
	}
	if !ok {
		return Identity{}, fmt.Errorf("%w: signed by unknown key %q", ErrInvalidToken, kid)
	}

	var std jwt.Claims
	var private struct {
		Kubernetes *kubernetesClaims `json:"kubernetes.io"`
	}
	if err := tok.Claims(key.Key, &std, &private); err != nil {
		return Identity{}, fmt.Errorf("%w: signature or payload invalid: %v", ErrInvalidToken, err)
	}
	if std.Expiry == nil {
		return Identity{}, fmt.Errorf("%w: no expiry (exp); ward accepts only bound, expiring tokens", ErrInvalidToken)
	}
	expected := jwt.Expected{Issuer: v.cfg.Issuer, AnyAudience: jwt.Audience{v.cfg.Audience}, Time: v.cfg.Now()}
	if err := std.ValidateWithLeeway(expected, Leeway); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}

	ns, name, ok := parseUsername(std.Subject)
	if !ok {
		return Identity{}, fmt.Errorf("%w: subject is not a service account", ErrInvalidToken)
	}
	k := private.Kubernetes
	if k == nil || k.Namespace != ns || k.ServiceAccount.Name != name {
		return Identity{}, fmt.Errorf("%w: kubernetes.io claim missing or inconsistent with the subject", ErrInvalidToken)
	}
	id := Identity{Namespace: ns, ServiceAccount: name, Expiry: std.Expiry.Time()}
	if k.Pod != nil {
		id.PodName, id.PodUID = k.Pod.Name, k.Pod.UID
	}
	return id, nil
}

func (v *JWKS) key(kid string) (jose.JSONWebKey, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	keys := v.keys.Key(kid)
	if len(keys) == 0 && kid == "" && len(v.keys.Keys) == 1 {
		return v.keys.Keys[0], true
	}
	for _, k := range keys {
		if k.Use == "" || k.Use == "sig" {
			return k, true
		}
	}
	return jose.JSONWebKey{}, false
}

func (v *JWKS) mayRefresh() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cfg.Now().Sub(v.fetched) >= jwksMinRefresh
}
