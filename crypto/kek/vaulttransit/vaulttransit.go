// Package vaulttransit implements a KEK (ward.dev/ward/crypto/kek) with the
// Transit secrets engine of HashiCorp Vault: the key stays in Vault, and
// ward sends keysets to its encrypt and decrypt endpoints. The calls go
// through Tink's Vault extension (github.com/tink-crypto/tink-go-hcvault),
// which passes associated data in Transit's associated_data parameter, so
// the Transit key must be an AEAD key type such as aes256-gcm96 created
// without derivation.
//
// Security contract: a Vault that cannot be reached, is sealed or fails
// with a 5xx status returns an error wrapping kek.ErrSealed, so callers
// return 503. A rejected token (403) or a ciphertext that fails
// authentication returns a plain error. The Vault token appears in no error,
// and nothing in this package logs.
package vaulttransit

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/tink-crypto/tink-go-hcvault/v2/integration/hcvault"
	"github.com/tink-crypto/tink-go/v2/tink"

	"ward.dev/ward/crypto/kek"
	"ward.dev/ward/crypto/secret"
)

// ErrDenied reports that Vault rejected the token or its policy does not
// allow the request (HTTP 403).
var ErrDenied = errors.New("vaulttransit: permission denied")

// DefaultTimeout bounds one request to Vault when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Config names the Vault server, the token and the Transit key.
type Config struct {
	Address string       // Vault address, such as https://127.0.0.1:8200
	Token   secret.Bytes // Vault token with update on <mount>/encrypt/<key> and <mount>/decrypt/<key>
	Mount   string       // mount path of the Transit engine; empty means "transit"
	Key     string       // name of the Transit key
	CACert  string       // PEM file of the CA that signed Vault's certificate; empty uses the system roots
	Timeout time.Duration
}

// KEK encrypts with a Vault Transit key. KEK is safe for concurrent use.
type KEK struct {
	name string // mount/keys/key at address, for messages
	aead tink.AEAD
}

var _ kek.KEK = (*KEK)(nil)

// New returns a KEK for the Transit key that cfg names. It does not contact
// Vault, so a Vault that is down shows up on the first Encrypt or Decrypt.
// The client does not retry: a failed request returns at once.
func New(cfg Config) (*KEK, error) {
	if cfg.Address == "" {
		return nil, errors.New("vaulttransit.New: missing Vault address")
	}
	if cfg.Token.Len() == 0 {
		return nil, errors.New("vaulttransit.New: missing Vault token")
	}
	if cfg.Key == "" || strings.Contains(cfg.Key, "/") {
		return nil, fmt.Errorf("vaulttransit.New: invalid Transit key name %q", cfg.Key)
	}
	if cfg.Mount == "" {
		cfg.Mount = "transit"
	}
	cfg.Mount = strings.Trim(cfg.Mount, "/")
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}

	// api.DefaultConfig and api.NewClient read VAULT_* variables, among them
	// VAULT_SKIP_VERIFY. ward replaces the HTTP client, the address, the
	// token and the namespace, so that only cfg decides where and how ward
	// connects.
	apiCfg := api.DefaultConfig()
	if apiCfg.Error != nil {
		return nil, fmt.Errorf("vaulttransit.New: %v", apiCfg.Error)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	apiCfg.HttpClient = &http.Client{Transport: transport}
	apiCfg.Address = cfg.Address
	apiCfg.Timeout = cfg.Timeout
	apiCfg.MaxRetries = 0
	tlsCfg := &api.TLSConfig{CACert: cfg.CACert}
	if err := apiCfg.ConfigureTLS(tlsCfg); err != nil {
		return nil, fmt.Errorf("vaulttransit.New: CA certificate %q: %v", cfg.CACert, err)
	}
	client, err := api.NewClient(apiCfg)
	if err != nil {
		return nil, fmt.Errorf("vaulttransit.New: %v", err)
	}
	client.ClearNamespace()
	token := cfg.Token.Reveal()
	client.SetToken(string(token))
	clear(token)

	keyPath := "/" + cfg.Mount + "/keys/" + cfg.Key
	aead, err := hcvault.NewAEAD(keyPath, client.Logical())
	if err != nil {
		return nil, fmt.Errorf("vaulttransit.New: key path %s: %v", keyPath, err)
	}
	return &KEK{name: fmt.Sprintf("%s/keys/%s at %s", cfg.Mount, cfg.Key, cfg.Address), aead: aead}, nil
}

// String names the Transit key and the Vault address for messages.
func (k *KEK) String() string { return "vault-transit KEK " + k.name }

// Encrypt sends plaintext to Vault's encrypt endpoint and returns Vault's
// ciphertext ("vault:v<version>:<base64>"). Empty plaintext is rejected,
// so that Decrypt can treat a response without plaintext as a failure.
func (k *KEK) Encrypt(plaintext, associatedData []byte) ([]byte, error) {
	if len(plaintext) == 0 {
		return nil, errors.New("vaulttransit: empty plaintext is not allowed")
	}
	ct, err := k.aead.Encrypt(plaintext, associatedData)
	if err != nil {
		return nil, k.classify("encrypt", err)
	}
	return ct, nil
}

// Decrypt sends ciphertext to Vault's decrypt endpoint.
func (k *KEK) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	pt, err := k.aead.Decrypt(ciphertext, associatedData)
	if err != nil {
		return nil, k.classify("decrypt", err)
	}
	if len(pt) == 0 {
		return nil, fmt.Errorf("vaulttransit: decrypt with %s: Vault returned no plaintext", k)
	}
	return pt, nil
}

// classify maps a Vault client error to ward's errors: unreachable or
// sealed Vault to kek.ErrSealed, 403 to ErrDenied. Vault's own error text
// is kept, because it names the cause.
func (k *KEK) classify(op string, err error) error {
	var resp *api.ResponseError
	if !errors.As(err, &resp) {
		// No HTTP response at all: connection refused, DNS, TLS or timeout.
		return fmt.Errorf("vaulttransit: %s with %s: Vault unreachable: %w: %v", op, k, kek.ErrSealed, err)
	}

	detail := strings.Join(resp.Errors, "; ")
	switch {
	case resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("vaulttransit: %s with %s: %w (HTTP 403: %s); check the token and its policy", op, k, ErrDenied, detail)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("vaulttransit: %s with %s: Vault unavailable (HTTP %d: %s): %w", op, k, resp.StatusCode, detail, kek.ErrSealed)
	}
	return fmt.Errorf("vaulttransit: %s with %s failed (HTTP %d: %s)", op, k, resp.StatusCode, detail)
}
