package transform

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"ward.dev/ward/crypto/keyset"
	"ward.dev/ward/crypto/secret"
)

// ErrNoKey means a keyed transformer was requested without a masking key.
var ErrNoKey = errors.New("masking key missing (set --key-file for ward mask, masking_key_file for ward pgproxy)")

// ErrKeyFile means the key file is unreadable, malformed or too widely
// readable.
var ErrKeyFile = errors.New("invalid masking key file")

// MasterKeyLen is the length of a generated masking key in bytes.
const MasterKeyLen = 32

const (
	plainHeader  = "ward-masking-key v1"
	sealedHeader = "ward-masking-key-sealed v1"
	// sealedAD binds a sealed masking key to its purpose, so a ciphertext of
	// another ward keyset user does not open as a masking key.
	sealedAD     = "ward masking key"
	maxKeyFile   = 4096
	hkdfInfoBase = "ward masking v1 "
)

// Keys is the masking key. Transformers derive their keys from it with
// HKDF-SHA256, using the transformer name and its key parameter as info.
// Keys is immutable and safe for concurrent use; it never prints its
// material.
type Keys struct {
	master secret.Bytes
}

// NewKeys returns Keys over master, which must be at least 32 bytes.
func NewKeys(master secret.Bytes) (*Keys, error) {
	if master.Len() < MasterKeyLen {
		return nil, fmt.Errorf("%w: key is %d bytes, want at least %d", ErrKeyFile, master.Len(), MasterKeyLen)
	}
	return &Keys{master: master}, nil
}

// derive returns n bytes of key material for purpose.
func (k *Keys) derive(purpose string, n int) []byte {
	m := k.master.Reveal()
	defer clear(m)
	out, err := hkdf.Key(sha256.New, m, nil, hkdfInfoBase+purpose, n)
	if err != nil {
		// hkdf.Key fails only for n > 255*32 bytes; callers in this
		// package ask for at most 64.
		panic("transform: hkdf: " + err.Error())
	}
	return out
}

// GenerateKeyFile writes a new random masking key to path with mode 0600.
// It fails if path exists, so a key that masked data is not overwritten.
//
// File layout: the line "ward-masking-key v1", then the key as 64 hex
// digits on one line.
func GenerateKeyFile(path string, random io.Reader) error {
	key, err := secret.Random(random, MasterKeyLen)
	if err != nil {
		return err
	}
	raw := key.Reveal()
	defer clear(raw)
	return writeNew(path, []byte(plainHeader+"\n"+hex.EncodeToString(raw)+"\n"))
}

// SealKeyFile writes a new random masking key to path, encrypted by ks
// (a Tink AES-256-GCM keyset sealed under a KEK), with mode 0600.
//
// File layout: the line "ward-masking-key-sealed v1", then the keyset
// ciphertext of the key in standard base64 on one line.
func SealKeyFile(path string, ks *keyset.Keyset, random io.Reader) error {
	key, err := secret.Random(random, MasterKeyLen)
	if err != nil {
		return err
	}
	raw := key.Reveal()
	defer clear(raw)
	ct, err := ks.Encrypt(raw, []byte(sealedAD))
	if err != nil {
		return fmt.Errorf("sealing masking key: %w", err)
	}
	return writeNew(path, []byte(sealedHeader+"\n"+base64.StdEncoding.EncodeToString(ct)+"\n"))
}

// LoadKeyFile reads a masking key file. A sealed file needs ks; a plain
// file ignores it. The file must not be readable by group or others.
func LoadKeyFile(path string, ks *keyset.Keyset) (*Keys, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o, want 0600 (run chmod 600 %s)", ErrKeyFile, path, fi.Mode().Perm(), path)
	}
	if fi.Size() > maxKeyFile {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrKeyFile, path, maxKeyFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	defer clear(data)

	header, body, _ := strings.Cut(string(bytes.TrimSpace(data)), "\n")
	body = strings.TrimSpace(body)
	switch strings.TrimSpace(header) {
	case plainHeader:
		raw, err := hex.DecodeString(body)
		if err != nil {
			return nil, fmt.Errorf("%w: %s:2: key is not hex", ErrKeyFile, path)
		}
		defer clear(raw)
		return NewKeys(secret.New(raw))
	case sealedHeader:
		if ks == nil {
			return nil, fmt.Errorf("%w: %s is sealed by a keyset; pass --keyset and its KEK", ErrKeyFile, path)
		}
		ct, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			return nil, fmt.Errorf("%w: %s:2: ciphertext is not base64", ErrKeyFile, path)
		}
		raw, err := ks.Decrypt(ct, []byte(sealedAD))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: unsealing failed: %w", ErrKeyFile, path, err)
		}
		defer clear(raw)
		return NewKeys(secret.New(raw))
	default:
		return nil, fmt.Errorf("%w: %s:1: want %q or %q", ErrKeyFile, path, plainHeader, sealedHeader)
	}
}

// writeNew writes data to a temporary file beside path and links it into
// place, failing if path exists.
func writeNew(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".masking-key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// Link fails when path exists, unlike Rename, so an existing key
	// survives.
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing masking key: %w", err)
	}
	return nil
}
