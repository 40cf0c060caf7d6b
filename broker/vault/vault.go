// Package vault connects ward to HashiCorp Vault (or OpenBao, which keeps
// the same HTTP API) through github.com/hashicorp/vault/api.
//
// A Client logs in with a token, AppRole or Kubernetes auth and keeps its
// own token alive with api.LifetimeWatcher. When Vault refuses a renewal,
// or the token reaches its maximum TTL, the Client logs in again. It warns
// when its token would expire before a lease it holds, because Vault
// revokes a token's leases with the token.
//
// On top of the Client, an Issuer hands out KV v2 secrets
// ("kv/<mount>/<path>", version recorded) and database credentials
// ("<mount>/creds/<role>", renewed with sys/leases/renew and revoked with
// sys/leases/revoke) to ward's lease manager. SignCSR signs with Vault PKI
// and Encrypt and Decrypt use Transit.
//
// Security contract: the Vault token, the login secrets and every secret
// read from Vault stay out of logs and error messages. Requests to a
// plain-http address are rejected unless it is a loopback address. TLS
// verification cannot be turned off, including through VAULT_SKIP_VERIFY.
// An unreachable or sealed Vault yields *UnavailableError (ErrUnavailable),
// and Vault's 403 yields ErrDenied.
package vault

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"time"

	"ward.dev/ward/crypto/secret"
)

// Errors that callers branch on.
var (
	// ErrUnavailable marks a Vault that cannot be reached, is sealed or
	// returns a 5xx or 429. The request may succeed later, so the API
	// returns 503 with Retry-After.
	ErrUnavailable = errors.New("vault unavailable")

	// ErrDenied means Vault rejected the token or the request (403).
	ErrDenied = errors.New("vault denied the request")

	// ErrNotFound means the secret or role does not exist.
	ErrNotFound = errors.New("vault secret not found")

	// ErrGone means the lease no longer exists in Vault. Revoke treats it
	// as success, and Renew returns it so the lease can be marked revoked.
	ErrGone = errors.New("vault lease no longer exists")

	// ErrBeyondMaxTTL means Vault renewed a lease to less than requested,
	// because the lease reached its max TTL. The error is a
	// *ShortRenewalError.
	ErrBeyondMaxTTL = errors.New("vault lease renewed short of the requested expiry")
)

// defaultRetryAfter is the Retry-After hint for an unreachable Vault.
const defaultRetryAfter = 5 * time.Second

// UnavailableError reports that Vault could not serve a request. It
// matches ErrUnavailable with errors.Is.
type UnavailableError struct {
	Backend string // "vault <address>"
	Err     error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%s unavailable: %v", e.Backend, e.Err)
}

// Unwrap returns ErrUnavailable and the cause.
func (e *UnavailableError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// BackendName returns the backend named in the error, for a 503 response.
func (e *UnavailableError) BackendName() string { return e.Backend }

// RetryAfter returns how long a client should wait before trying again.
func (e *UnavailableError) RetryAfter() time.Duration { return defaultRetryAfter }

// ShortRenewalError reports the expiry Vault granted when it was earlier
// than requested. It matches ErrBeyondMaxTTL.
type ShortRenewalError struct {
	LeaseID string
	Granted time.Time
}

func (e *ShortRenewalError) Error() string {
	return fmt.Sprintf("vault renewed lease %s only until %s", e.LeaseID, e.Granted.UTC().Format(time.RFC3339))
}

// Unwrap returns ErrBeyondMaxTTL.
func (e *ShortRenewalError) Unwrap() error { return ErrBeyondMaxTTL }

// Config is the Vault section of ward's configuration.
type Config struct {
	// Address is Vault's base URL, e.g. https://vault.internal:8200.
	Address string `yaml:"address"`

	// CACert is a PEM file of CAs to trust for Vault's certificate. Empty
	// means the system roots.
	CACert string `yaml:"ca_cert"`

	// Timeout bounds each request. Default 10s.
	Timeout time.Duration `yaml:"timeout"`

	Auth Auth `yaml:"auth"`
}

// Auth selects how the Client logs in.
type Auth struct {
	// Method is "token", "approle" or "kubernetes".
	Method string `yaml:"method"`

	// Mount is the auth mount path. Default: the method's name.
	Mount string `yaml:"mount"`

	// Token is the token for the token method. It is read again at each
	// re-authentication, so a file that an agent rewrites keeps working.
	Token SecretRef `yaml:"token"`

	// RoleID and SecretID log in with AppRole.
	RoleID   string    `yaml:"role_id"`
	SecretID SecretRef `yaml:"secret_id"`

	// Role and JWTFile log in with Kubernetes auth. JWTFile defaults to
	// the projected service-account token path.
	Role    string `yaml:"role"`
	JWTFile string `yaml:"jwt_file"`
}

// DefaultJWTFile is the path at which Kubernetes mounts a pod's
// service-account token.
const DefaultJWTFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// SecretRef names where a secret is read from: an environment variable or
// a file. Exactly one must be set.
type SecretRef struct {
	Env  string `yaml:"env"`
	File string `yaml:"file"`
}

// maxSecretFile bounds how much of a secret file is read. A Kubernetes
// service-account JWT is a few KiB.
const maxSecretFile = 64 << 10

// Resolve reads the secret. A file's trailing newline is dropped.
func (r SecretRef) Resolve() (secret.Bytes, error) {
	switch {
	case r.Env != "" && r.File != "":
		return secret.Bytes{}, errors.New("secret reference sets both env and file, want exactly one")
	case r.Env != "":
		v, ok := os.LookupEnv(r.Env)
		if !ok || v == "" {
			return secret.Bytes{}, fmt.Errorf("environment variable %s is unset or empty", r.Env)
		}
		return secret.New([]byte(v)), nil
	case r.File != "":
		return readSecretFile(r.File)
	}
	return secret.Bytes{}, errors.New("secret reference is empty, want env or file")
}

func readSecretFile(path string) (secret.Bytes, error) {
	f, err := os.Open(path)
	if err != nil {
		return secret.Bytes{}, fmt.Errorf("reading secret file: %w", err)
	}
	defer f.Close()

	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	defer clear(b)
	if err != nil {
		return secret.Bytes{}, fmt.Errorf("reading secret file %s: %w", path, err)
	}
	if len(b) > maxSecretFile {
		return secret.Bytes{}, fmt.Errorf("secret file %s is larger than %d bytes", path, maxSecretFile)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return secret.Bytes{}, fmt.Errorf("secret file %s is empty", path)
	}
	return secret.New(b), nil
}

// validate checks the configuration without contacting Vault.
func (c Config) validate() error {
	u, err := url.Parse(c.Address)
	if err != nil || u.Host == "" {
		return fmt.Errorf("vault address %q is invalid, want https://host:port", c.Address)
	}
	switch u.Scheme {
	case "https":
	case "http":
		// The token travels in a header, so plain http is allowed only
		// on loopback, where no network carries it.
		if !isLoopback(u.Hostname()) {
			return fmt.Errorf("vault address %q uses plain http on a non-loopback host, want https", c.Address)
		}
	default:
		return fmt.Errorf("vault address %q has scheme %q, want https", c.Address, u.Scheme)
	}

	switch c.Auth.Method {
	case "token":
		if c.Auth.Token == (SecretRef{}) {
			return errors.New("vault auth method token needs token.env or token.file")
		}
	case "approle":
		if c.Auth.RoleID == "" || c.Auth.SecretID == (SecretRef{}) {
			return errors.New("vault auth method approle needs role_id and secret_id")
		}
	case "kubernetes":
		if c.Auth.Role == "" {
			return errors.New("vault auth method kubernetes needs role")
		}
	default:
		return fmt.Errorf("vault auth method %q is invalid, want token, approle or kubernetes", c.Auth.Method)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
