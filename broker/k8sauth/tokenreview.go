package k8sauth

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TokenReviewConfig configures a TokenReview verifier. In a pod the
// defaults are the in-cluster API server and service-account files.
type TokenReviewConfig struct {
	// APIServer is https://host:port; https://kubernetes.default.svc by
	// default.
	APIServer string
	// Audience is the audience ward requires; the API server checks it.
	Audience string
	// CAFile and BearerTokenFile default to the pod's service-account
	// files. The account needs create on tokenreviews
	// (system:auth-delegator).
	CAFile          string
	BearerTokenFile string
}

const inClusterDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// TokenReview verifies tokens by asking the API server. It is safe for
// concurrent use.
type TokenReview struct {
	cfg  TokenReviewConfig
	http *http.Client
}

var _ Verifier = (*TokenReview)(nil)

// NewTokenReview checks cfg and prepares the client.
func NewTokenReview(cfg TokenReviewConfig) (*TokenReview, error) {
	if cfg.Audience == "" {
		return nil, errors.New("k8sauth: audience is required")
	}
	if cfg.APIServer == "" {
		cfg.APIServer = "https://kubernetes.default.svc"
	}
	if !strings.HasPrefix(cfg.APIServer, "https://") {
		return nil, fmt.Errorf("k8sauth: invalid API server %q, want https://host:port", cfg.APIServer)
	}
	if cfg.CAFile == "" {
		cfg.CAFile = inClusterDir + "/ca.crt"
	}
	if cfg.BearerTokenFile == "" {
		cfg.BearerTokenFile = inClusterDir + "/token"
	}
	pemBytes, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("k8sauth: read API server CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("k8sauth: CA file %s contains no PEM certificate", cfg.CAFile)
	}
	return &TokenReview{cfg: cfg, http: &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}},
	}}, nil
}

// Verify sends a TokenReview for the token with ward's audience.
func (v *TokenReview) Verify(ctx context.Context, token string) (Identity, error) {
	if err := checkSize(token); err != nil {
		return Identity{}, err
	}
	// The bearer token is read on every call because kubelet rotates it.
	bearer, err := readBounded(v.cfg.BearerTokenFile)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: read service-account token: %v", ErrUnavailable, err)
	}
	review := authenticationv1.TokenReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
		Spec:     authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{v.cfg.Audience}},
	}
	body, err := json.Marshal(review)
	if err != nil {
		return Identity{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(v.cfg.APIServer, "/")+"/apis/authentication.k8s.io/v1/tokenreviews", bytes.NewReader(body))
	if err != nil {
		return Identity{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(bearer)))
	resp, err := v.http.Do(req)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: TokenReview: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: TokenReview: %v", ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return Identity{}, fmt.Errorf("%w: TokenReview: API server returned %s", ErrUnavailable, resp.Status)
	}
	var result authenticationv1.TokenReview
	if err := json.Unmarshal(data, &result); err != nil {
		return Identity{}, fmt.Errorf("%w: TokenReview response: %v", ErrUnavailable, err)
	}

	st := result.Status
	if !st.Authenticated {
		return Identity{}, fmt.Errorf("%w: rejected by the API server", ErrInvalidToken)
	}
	// An API server that ignores spec.audiences returns none; accepting
	// that would accept tokens meant for any audience.
	if !slices.Contains(st.Audiences, v.cfg.Audience) {
		return Identity{}, fmt.Errorf("%w: not valid for audience %q", ErrInvalidToken, v.cfg.Audience)
	}
	ns, name, ok := parseUsername(st.User.Username)
	if !ok {
		return Identity{}, fmt.Errorf("%w: not a service-account token", ErrInvalidToken)
	}
	id := Identity{Namespace: ns, ServiceAccount: name}
	if names := st.User.Extra["authentication.kubernetes.io/pod-name"]; len(names) == 1 {
		id.PodName = names[0]
	}
	if uids := st.User.Extra["authentication.kubernetes.io/pod-uid"]; len(uids) == 1 {
		id.PodUID = uids[0]
	}
	return id, nil
}
