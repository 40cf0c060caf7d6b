package pgcred

import (
	"io"
	"log/slog"
	"sync"

	"ward.dev/ward/crypto/secret"
)

// readyPasswords is how many passwords with verifiers are computed ahead.
const readyPasswords = 8

// generatedPassword is a login password with its SCRAM-SHA-256 verifier.
type generatedPassword struct {
	password secret.Bytes
	verifier string
}

// passwordSource computes passwords and their verifiers ahead of need in
// one background goroutine. The PBKDF2 in a verifier is most of the
// client-side CPU of an issuance (about 0.7 ms on a 2-core AMD EPYC VM).
// Computing it ahead lets it overlap the database round trips of earlier
// requests. It adds no CPU capacity, and when requests outrun it, Take
// computes inline. Safe for concurrent use.
type passwordSource struct {
	rand  io.Reader
	log   *slog.Logger
	ready chan generatedPassword
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func newPasswordSource(rand io.Reader, log *slog.Logger) *passwordSource {
	s := &passwordSource{
		rand:  rand,
		log:   log,
		ready: make(chan generatedPassword, readyPasswords),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go s.fill()
	return s
}

// Take returns a fresh password and verifier, never one handed out before.
func (s *passwordSource) Take() (generatedPassword, error) {
	select {
	case g := <-s.ready:
		return g, nil
	default:
		return generatePassword(s.rand)
	}
}

func (s *passwordSource) fill() {
	defer close(s.done)
	for {
		g, err := generatePassword(s.rand)
		if err != nil {
			// Take reports the same failure to its caller when it
			// computes inline, so this goroutine only stops.
			s.log.Error("precomputing database passwords stopped", "error", err)
			return
		}
		select {
		case s.ready <- g:
		case <-s.stop:
			return
		}
	}
}

// Close stops the background goroutine and waits for it.
func (s *passwordSource) Close() {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
	})
}

func generatePassword(rand io.Reader) (generatedPassword, error) {
	password, err := newPassword(rand)
	if err != nil {
		return generatedPassword{}, err
	}
	pw := password.Reveal()
	defer clear(pw)
	verifier, err := scramVerifier(rand, pw)
	if err != nil {
		return generatedPassword{}, err
	}
	return generatedPassword{password: password, verifier: verifier}, nil
}
