// Package secret holds key material and other secrets in memory so that they
// do not print themselves.
//
// A [Bytes] value prints as "[redacted]" through fmt (every verb), JSON and
// text marshalling. Callers get the material only through [Bytes.Reveal],
// which returns a copy, so a caller that clears its copy does not clear the
// original. Zeroing is best effort: the Go runtime may have copied the
// backing array (on append, by the garbage collector's stack growth, or in
// a value passed by copy), and those copies are out of reach.
package secret

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
)

const redacted = "[redacted]"

// maxRandom bounds Random so that a bad length cannot exhaust memory.
const maxRandom = 1 << 20

// Bytes is secret material. The zero value is an empty secret. A Bytes value
// is safe for concurrent reads, but Wipe must not run concurrently with any other
// method on the same value.
type Bytes struct {
	b []byte
}

// New returns a secret holding a copy of b. The caller may clear b afterwards.
func New(b []byte) Bytes {
	if len(b) == 0 {
		return Bytes{}
	}
	c := make([]byte, len(b))
	copy(c, b)
	return Bytes{b: c}
}

// Random reads n bytes from r into a new secret.
func Random(r io.Reader, n int) (Bytes, error) {
	if n < 0 || n > maxRandom {
		return Bytes{}, fmt.Errorf("secret.Random: length %d out of range [0, %d]", n, maxRandom)
	}
	if r == nil {
		return Bytes{}, errors.New("secret.Random: nil random source")
	}

	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		clear(b)
		return Bytes{}, fmt.Errorf("secret.Random: reading random source: %w", err)
	}
	return Bytes{b: b}, nil
}

// Reveal returns a copy of the secret material. Clear the copy when done.
func (s Bytes) Reveal() []byte {
	if len(s.b) == 0 {
		return nil
	}
	c := make([]byte, len(s.b))
	copy(c, s.b)
	return c
}

// Len returns the length of the secret in bytes. The length is not secret.
func (s Bytes) Len() int { return len(s.b) }

// Equal reports whether other equals the secret, in time that depends only on
// the lengths of the two values.
func (s Bytes) Equal(other []byte) bool {
	return subtle.ConstantTimeCompare(s.b, other) == 1
}

// Wipe overwrites the secret's backing array with zeros and empties s. Copies
// handed out by Reveal, and copies the Go runtime made, are not cleared.
func (s *Bytes) Wipe() {
	clear(s.b)
	s.b = nil
}

// String returns "[redacted]".
func (s Bytes) String() string { return redacted }

// GoString returns "[redacted]", so %#v does not print the material.
func (s Bytes) GoString() string { return redacted }

// Format prints "[redacted]" for every verb and flag, including %x and %+v.
func (s Bytes) Format(f fmt.State, _ rune) {
	_, _ = io.WriteString(f, redacted)
}

// MarshalJSON returns the JSON string "[redacted]".
func (s Bytes) MarshalJSON() ([]byte, error) {
	return []byte(`"` + redacted + `"`), nil
}

// MarshalText returns "[redacted]".
func (s Bytes) MarshalText() ([]byte, error) {
	return []byte(redacted), nil
}
