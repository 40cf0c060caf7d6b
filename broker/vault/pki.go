package vault

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	"ward.dev/ward/crypto/secret"
)

// SignRequest is a request to sign a CSR with Vault PKI at <Mount>/sign/<Role>.
type SignRequest struct {
	Mount      string // default "pki"
	Role       string
	CSR        []byte // PEM "CERTIFICATE REQUEST"
	CommonName string
	URISANs    []string // e.g. the SPIFFE ID
	DNSNames   []string // sent as alt_names
	IPSANs     []string // sent as ip_sans
	TTL        time.Duration
}

// Certificate is a certificate Vault signed.
type Certificate struct {
	CertificatePEM []byte
	ChainPEM       []byte // issuing CA first
	Serial         string // colon-separated hex, as Vault formats it
	NotAfter       time.Time
}

// SignCSR signs a CSR with Vault PKI.
func (c *Client) SignCSR(ctx context.Context, req SignRequest) (Certificate, error) {
	if req.Mount == "" {
		req.Mount = "pki"
	}
	if req.Role == "" || strings.Contains(req.Role, "/") {
		return Certificate{}, fmt.Errorf("vault: PKI role %q is invalid", req.Role)
	}
	if block, _ := pem.Decode(req.CSR); block == nil || block.Type != "CERTIFICATE REQUEST" {
		return Certificate{}, errors.New("vault: CSR is not a PEM CERTIFICATE REQUEST")
	}
	if err := c.ready(); err != nil {
		return Certificate{}, err
	}

	body := map[string]any{
		"csr":         string(req.CSR),
		"common_name": req.CommonName,
		"format":      "pem",
	}
	if len(req.URISANs) > 0 {
		body["uri_sans"] = strings.Join(req.URISANs, ",")
	}
	if len(req.DNSNames) > 0 {
		body["alt_names"] = strings.Join(req.DNSNames, ",")
	}
	if len(req.IPSANs) > 0 {
		body["ip_sans"] = strings.Join(req.IPSANs, ",")
	}
	if req.TTL > 0 {
		body["ttl"] = fmt.Sprintf("%ds", int(req.TTL.Seconds()))
	}
	path := req.Mount + "/sign/" + req.Role
	s, err := c.api.Logical().WriteWithContext(ctx, path, body)
	if err != nil {
		return Certificate{}, fmt.Errorf("vault: signing with %s: %w", path, c.classify(err))
	}
	if s == nil || s.Data == nil {
		return Certificate{}, fmt.Errorf("vault: %s returned no certificate", path)
	}

	certPEM, _ := s.Data["certificate"].(string)
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil || block.Type != "CERTIFICATE" {
		return Certificate{}, fmt.Errorf("vault: %s returned no PEM certificate", path)
	}
	out := Certificate{CertificatePEM: []byte(certPEM)}
	out.Serial, _ = s.Data["serial_number"].(string)
	if exp, ok := numberField(s.Data["expiration"]); ok {
		out.NotAfter = time.Unix(exp, 0)
	}

	// ca_chain lists the issuing CA first; older Vault versions send only
	// issuing_ca.
	var chain []string
	if list, ok := s.Data["ca_chain"].([]any); ok {
		for _, v := range list {
			if p, ok := v.(string); ok {
				chain = append(chain, strings.TrimSpace(p))
			}
		}
	}
	if issuing, ok := s.Data["issuing_ca"].(string); ok && len(chain) == 0 {
		chain = append(chain, strings.TrimSpace(issuing))
	}
	if len(chain) > 0 {
		out.ChainPEM = []byte(strings.Join(chain, "\n") + "\n")
	}
	return out, nil
}

// RevokeCert revokes the certificate with serial, in Vault's colon-separated
// hex, at <mount>/revoke (mount default "pki"), which puts it on the
// mount's CRL. For a serial it has no record of, Vault returns 400
// "certificate with serial ... not found", and RevokeCert ErrNotFound.
func (c *Client) RevokeCert(ctx context.Context, mount, serial string) error {
	if mount == "" {
		mount = "pki"
	}
	if serial == "" {
		return errors.New("vault: missing certificate serial to revoke")
	}
	if err := c.ready(); err != nil {
		return err
	}
	path := mount + "/revoke"
	_, err := c.api.Logical().WriteWithContext(ctx, path, map[string]any{"serial_number": serial})
	var respErr *api.ResponseError
	if errors.As(err, &respErr) && respErr.StatusCode == http.StatusBadRequest && strings.Contains(strings.Join(respErr.Errors, " "), "not found") {
		return fmt.Errorf("vault: revoking certificate %s at %s: %w", serial, path, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("vault: revoking certificate %s at %s: %w", serial, path, c.classify(err))
	}
	return nil
}

// Encrypt encrypts plaintext with the Transit key <mount>/<key> (mount
// default "transit") and returns Vault's "vault:v<N>:..." ciphertext.
func (c *Client) Encrypt(ctx context.Context, mount, key string, plaintext []byte) (string, error) {
	if mount == "" {
		mount = "transit"
	}
	if err := c.ready(); err != nil {
		return "", err
	}
	path := mount + "/encrypt/" + key
	s, err := c.api.Logical().WriteWithContext(ctx, path, map[string]any{
		"plaintext": base64.StdEncoding.EncodeToString(plaintext),
	})
	if err != nil {
		return "", fmt.Errorf("vault: transit encrypt with %s/%s: %w", mount, key, c.classify(err))
	}
	if s == nil || s.Data == nil {
		return "", fmt.Errorf("vault: transit encrypt with %s/%s returned no ciphertext", mount, key)
	}
	ct, _ := s.Data["ciphertext"].(string)
	if !strings.HasPrefix(ct, "vault:v") {
		return "", fmt.Errorf("vault: transit encrypt with %s/%s returned no ciphertext", mount, key)
	}
	return ct, nil
}

// Decrypt decrypts a Transit ciphertext with <mount>/<key>.
func (c *Client) Decrypt(ctx context.Context, mount, key, ciphertext string) (secret.Bytes, error) {
	if mount == "" {
		mount = "transit"
	}
	if err := c.ready(); err != nil {
		return secret.Bytes{}, err
	}
	s, err := c.api.Logical().WriteWithContext(ctx, mount+"/decrypt/"+key, map[string]any{"ciphertext": ciphertext})
	if err != nil {
		return secret.Bytes{}, fmt.Errorf("vault: transit decrypt with %s/%s: %w", mount, key, c.classify(err))
	}
	if s == nil || s.Data == nil {
		return secret.Bytes{}, fmt.Errorf("vault: transit decrypt with %s/%s returned no plaintext", mount, key)
	}
	encoded, _ := s.Data["plaintext"].(string)
	plaintext, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return secret.Bytes{}, fmt.Errorf("vault: transit decrypt with %s/%s returned invalid base64", mount, key)
	}
	defer clear(plaintext)
	return secret.New(plaintext), nil
}
