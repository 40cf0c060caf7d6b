package pgproxy

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// ErrNoLogin means the login does not exist or has expired.
var ErrNoLogin = errors.New("no such login")

// DefaultSCRAMIterations is the PBKDF2 iteration count of verifiers that
// NewVerifier makes, PostgreSQL's default for scram_iterations.
const DefaultSCRAMIterations = 4096

// Verifier is a SCRAM-SHA-256 verifier (RFC 5802, RFC 7677): it checks a
// password proof without storing the password.
type Verifier struct {
	Salt       []byte
	Iterations int
	StoredKey  [sha256.Size]byte
	ServerKey  [sha256.Size]byte
}

// NewVerifier derives the verifier of password with a fresh 16-byte salt
// read from rand.
//
// NOTE: the password is used as its UTF-8 bytes without SASLprep, which
// matches PostgreSQL for ASCII passwords; broker-issued passwords are ASCII.
func NewVerifier(password []byte, rand io.Reader, iterations int) (*Verifier, error) {
	salt := make([]byte, 16)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return nil, fmt.Errorf("pgproxy: reading salt: %w", err)
	}
	return deriveVerifier(password, salt, iterations)
}

func deriveVerifier(password, salt []byte, iterations int) (*Verifier, error) {
	salted, err := pbkdf2.Key(sha256.New, string(password), salt, iterations, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("pgproxy: deriving verifier: %w", err)
	}
	defer clear(salted)
	v := &Verifier{Salt: salt, Iterations: iterations}
	clientKey := hmacSum(salted, "Client Key")
	v.StoredKey = sha256.Sum256(clientKey)
	clear(clientKey)
	copy(v.ServerKey[:], hmacSum(salted, "Server Key"))
	return v, nil
}

func hmacSum(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// Login is a client login the proxy accepts.
type Login struct {
	// SPIFFEID is the caller's identity: the Casbin subject.
	SPIFFEID string
	Verifier *Verifier
	// Expires is when the login stops working; zero means never.
	Expires time.Time
}

// LoginStore finds client logins by user name. Implementations must be safe
// for concurrent use. Lookup returns ErrNoLogin for an unknown user; the
// proxy checks Expires itself.
type LoginStore interface {
	Lookup(ctx context.Context, user string) (Login, error)
}

// MemoryLogins is an in-memory LoginStore. It is safe for concurrent use.
type MemoryLogins struct {
	mu     sync.RWMutex
	logins map[string]Login
}

var _ LoginStore = (*MemoryLogins)(nil)

// NewMemoryLogins returns an empty store.
func NewMemoryLogins() *MemoryLogins {
	return &MemoryLogins{logins: map[string]Login{}}
}

// Put adds or replaces the login of user.
func (m *MemoryLogins) Put(user string, l Login) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.logins[user] = l
}

// Delete removes the login of user.
func (m *MemoryLogins) Delete(user string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.logins, user)
}

// Lookup returns the login of user or ErrNoLogin.
func (m *MemoryLogins) Lookup(_ context.Context, user string) (Login, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	l, ok := m.logins[user]
	if !ok {
		return Login{}, ErrNoLogin
	}
	return l, nil
}
