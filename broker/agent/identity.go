package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxTokenFile bounds a join token or service-account token file.
const maxTokenFile = 64 << 10

// refreshIdentity renews the agent's own certificate with itself, or
// authenticates afresh with the platform credential when there is none,
// when it has expired, or when the broker rejects it.
func (a *Agent) refreshIdentity(ctx context.Context) error {
	a.mu.Lock()
	cur := a.identity
	a.mu.Unlock()
	if cur == nil {
		if cur = a.loadSavedIdentity(); cur != nil {
			a.broker.setIdentity(tlsCertificate(cur))
		}
	}

	if cur != nil && a.now().Before(cur.expiresAt) {
		key, csr, err := newKeyAndCSR()
		if err != nil {
			return err
		}
		var resp x509Response
		err = a.broker.post(ctx, "/v1/issue/x509", map[string]any{"csr": string(csr), "ttl": a.cfg.IdentityTTL.Duration.String()}, &resp)
		if err == nil {
			return a.setIdentity(key, resp)
		}
		if !unauthorized(err) {
			return err
		}
		a.log.Warn("broker rejected the agent certificate, authenticating afresh", "error", err)
	}
	return a.authenticate(ctx)
}

// authenticate obtains a new agent certificate with the configured platform
// credential: a join token, a Kubernetes service-account token, or an
// existing ward certificate. The token files are read afresh each time, so
// a rotated service-account token or a new join token is picked up.
func (a *Agent) authenticate(ctx context.Context) error {
	key, csr, err := newKeyAndCSR()
	if err != nil {
		return err
	}
	body := map[string]any{"csr": string(csr), "ttl": a.cfg.IdentityTTL.Duration.String()}
	var path string
	switch a.cfg.Auth.Method {
	case AuthJoinToken:
		token, err := readToken(a.cfg.Auth.JoinTokenFile)
		if err != nil {
			return fmt.Errorf("auth.join_token_file: %w", err)
		}
		body["join_token"] = token
		path = "/v1/auth/join"
	case AuthKubernetes:
		token, err := readToken(a.cfg.Auth.TokenFile)
		if err != nil {
			return fmt.Errorf("auth.token_file: %w", err)
		}
		body["token"] = token
		path = "/v1/auth/kubernetes"
	case AuthCertificate:
		cert, err := tls.LoadX509KeyPair(a.cfg.Auth.CertFile, a.cfg.Auth.KeyFile)
		if err != nil {
			return fmt.Errorf("auth.cert_file and auth.key_file: %w", err)
		}
		if cert.Leaf != nil && !a.now().Before(cert.Leaf.NotAfter) {
			return fmt.Errorf("auth.cert_file %s expired at %s", a.cfg.Auth.CertFile, cert.Leaf.NotAfter)
		}
		a.broker.setIdentity(&cert)
		path = "/v1/issue/x509"
	default:
		return fmt.Errorf("unknown auth.method %q", a.cfg.Auth.Method)
	}

	var resp x509Response
	if err := a.broker.post(ctx, path, body, &resp); err != nil {
		if unauthorized(err) && a.cfg.Auth.Method == AuthJoinToken {
			return fmt.Errorf("authenticate with join token from %s: %w; put a new join token in that file", a.cfg.Auth.JoinTokenFile, err)
		}
		return fmt.Errorf("authenticate (%s): %w", a.cfg.Auth.Method, err)
	}
	if err := a.setIdentity(key, resp); err != nil {
		return err
	}
	a.log.Info("agent authenticated", "method", a.cfg.Auth.Method, "spiffe_id", resp.SPIFFEID)
	return nil
}

// setIdentity checks a certificate response and makes it the agent's own
// certificate for later calls.
func (a *Agent) setIdentity(key crypto.Signer, resp x509Response) error {
	c, err := x509Issued("identity", key, resp)
	if err != nil {
		return fmt.Errorf("agent certificate: %w", err)
	}
	a.broker.setIdentity(tlsCertificate(c))
	a.issued.Add(1)
	a.saveIdentity(c)

	a.mu.Lock()
	a.identity = c
	a.failures[identityKey] = 0
	a.due[identityKey] = a.renewalTime(c)
	a.mu.Unlock()
	a.log.Info("agent certificate renewed", "serial", c.serial, "expires_at", c.expiresAt)
	a.publish()
	return nil
}

// readToken reads a token file, bounded, without surrounding space.
func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", err
	}
	if len(buf) > maxTokenFile {
		return "", fmt.Errorf("%s is larger than %d bytes", path, maxTokenFile)
	}
	token := strings.TrimSpace(string(buf))
	clear(buf)
	if token == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return token, nil
}
