package kek

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tink-crypto/tink-go/v2/aead/subtle"

	"ward.dev/ward/crypto/secret"
)

// LocalKeySize is the size in bytes of a local KEK file: one AES-256 key.
const LocalKeySize = 32

// Local is a KEK whose 256-bit key is stored raw in a file that only its
// owner may read. It encrypts with AES-256-GCM (NIST SP 800-38D) through
// tink-go: a ciphertext is a random 12-byte IV, the encrypted data and a
// 16-byte tag, with no Tink key prefix. Local is safe for concurrent use.
type Local struct {
	path string
	aead *subtle.AESGCM
}

var _ KEK = (*Local)(nil)

// CreateLocal writes a new local KEK of LocalKeySize bytes read from rand to
// path. The file is created with mode 0600, O_EXCL so an existing file is never
// overwritten, and synced to disk together with its directory before
// CreateLocal returns.
func CreateLocal(path string, rand io.Reader) (*Local, error) {
	key, err := secret.Random(rand, LocalKeySize)
	if err != nil {
		return nil, fmt.Errorf("kek.CreateLocal: %w", err)
	}
	defer key.Wipe()

	raw := key.Reveal()
	defer clear(raw)

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("kek.CreateLocal: %s already exists; refusing to overwrite a KEK: %w", path, err)
		}
		return nil, fmt.Errorf("kek.CreateLocal: %w", err)
	}

	if err := writeAndSync(f, raw); err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("kek.CreateLocal: writing %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("kek.CreateLocal: %w", err)
	}
	return newLocal(path, raw)
}

// OpenLocal reads the local KEK at path. It rejects a file that is not a
// regular file, whose mode grants any access to group or others, or whose
// size is not LocalKeySize. A missing file returns an error wrapping both
// ErrSealed and fs.ErrNotExist.
func OpenLocal(path string) (*Local, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("kek.OpenLocal: KEK file %s not found: %w: %w", path, ErrSealed, err)
		}
		return nil, fmt.Errorf("kek.OpenLocal: %w", err)
	}
	defer f.Close()

	// Stat the open file, not the path, so the checks apply to the bytes read.
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("kek.OpenLocal: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("kek.OpenLocal: %s is not a regular file (mode %v)", path, info.Mode())
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("kek.OpenLocal: %s has mode %04o, which lets group or others access the key; run chmod 600 %s", path, perm, path)
	}
	if info.Size() != LocalKeySize {
		return nil, fmt.Errorf("kek.OpenLocal: %s is %d bytes, want %d: not a ward KEK file", path, info.Size(), LocalKeySize)
	}

	raw := make([]byte, LocalKeySize)
	defer clear(raw)
	if _, err := io.ReadFull(f, raw); err != nil {
		return nil, fmt.Errorf("kek.OpenLocal: reading %s: %w", path, err)
	}
	return newLocal(path, raw)
}

// newLocal builds the AEAD from raw. tink-go keeps its own copy of the key,
// so the caller may clear raw afterwards.
func newLocal(path string, raw []byte) (*Local, error) {
	aead, err := subtle.NewAESGCM(raw)
	if err != nil {
		// tink errors do not contain key bytes.
		return nil, fmt.Errorf("kek: AES-GCM key from %s: %v", path, err)
	}
	return &Local{path: path, aead: aead}, nil
}

// Encrypt seals plaintext with AES-256-GCM under a random IV.
func (l *Local) Encrypt(plaintext, associatedData []byte) ([]byte, error) {
	return l.aead.Encrypt(plaintext, associatedData)
}

// Decrypt opens a ciphertext produced by Encrypt with the same associated data.
func (l *Local) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	return l.aead.Decrypt(ciphertext, associatedData)
}

// Path returns the path of the KEK file.
func (l *Local) Path() string { return l.path }

// String names the KEK for error messages without any key material.
func (l *Local) String() string { return "local KEK " + l.path }

func writeAndSync(f *os.File, b []byte) error {
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// syncDir flushes a directory entry so that a newly created or renamed file
// survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
