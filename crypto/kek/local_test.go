package kek_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ward.dev/ward/crypto/kek"
)

func TestLocalRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek")
	created, err := kek.CreateLocal(path, rand.Reader)
	if err != nil {
		t.Fatalf("CreateLocal(%s) error: %v", path, err)
	}
	ct, err := created.Encrypt([]byte("keyset bytes"), []byte("aad"))
	if err != nil {
		t.Fatalf("Encrypt error: %v", err)
	}

	opened, err := kek.OpenLocal(path)
	if err != nil {
		t.Fatalf("OpenLocal(%s) error: %v", path, err)
	}
	pt, err := opened.Decrypt(ct, []byte("aad"))
	if err != nil {
		t.Fatalf("Decrypt error: %v", err)
	}
	if string(pt) != "keyset bytes" {
		t.Errorf("Decrypt = %q, want %q", pt, "keyset bytes")
	}
	if _, err := opened.Decrypt(ct, []byte("other aad")); err == nil {
		t.Errorf("Decrypt with wrong associated data error = nil, want an error")
	}
}

func TestCreateLocalFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek")
	if _, err := kek.CreateLocal(path, rand.Reader); err != nil {
		t.Fatalf("CreateLocal error: %v", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Errorf("CreateLocal file mode = %04o, want 0600", got)
	}
	if info.Size() != kek.LocalKeySize {
		t.Errorf("CreateLocal file size = %d, want %d", info.Size(), kek.LocalKeySize)
	}
}

func TestCreateLocalRefusesOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(path, []byte("existing"), 0o600); err != nil {
		t.Fatal(err)
	}

	_, err := kek.CreateLocal(path, rand.Reader)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("CreateLocal(existing) error = %v, want fs.ErrExist", err)
	}
	got, _ := os.ReadFile(path)
	if string(got) != "existing" {
		t.Errorf("CreateLocal changed an existing file to %q", got)
	}
}

func TestCreateLocalShortRandom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek")
	if _, err := kek.CreateLocal(path, bytes.NewReader(make([]byte, 5))); err == nil {
		t.Fatalf("CreateLocal with a short random source error = nil, want an error")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CreateLocal with a short random source left a file: stat error %v", err)
	}
}

func TestOpenLocalRejects(t *testing.T) {
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    string
	}{
		{"group readable", make([]byte, 32), 0o640, "mode 0640"},
		{"world readable", make([]byte, 32), 0o604, "mode 0604"},
		{"group writable", make([]byte, 32), 0o620, "mode 0620"},
		{"too short", make([]byte, 16), 0o600, "16 bytes, want 32"},
		{"too long", make([]byte, 33), 0o600, "33 bytes, want 32"},
		{"empty", nil, 0o600, "0 bytes, want 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kek")
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}

			_, err := kek.OpenLocal(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("OpenLocal(%s) error = %v, want one containing %q", tt.name, err, tt.want)
			}
		})
	}
}

func TestOpenLocalRejectsDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := kek.OpenLocal(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("OpenLocal(directory) error = %v, want not a regular file", err)
	}
}

func TestOpenLocalMissingIsSealed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing")
	_, err := kek.OpenLocal(path)
	if !errors.Is(err, kek.ErrSealed) {
		t.Errorf("OpenLocal(missing) error = %v, want kek.ErrSealed", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenLocal(missing) error = %v, want fs.ErrNotExist", err)
	}
}

func TestLocalCiphertextTampering(t *testing.T) {
	l, err := kek.CreateLocal(filepath.Join(t.TempDir(), "kek"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := l.Encrypt([]byte("keyset bytes"), nil)
	if err != nil {
		t.Fatal(err)
	}

	for i := range len(ct) * 8 {
		flipped := bytes.Clone(ct)
		flipped[i/8] ^= 1 << (i % 8)
		if _, err := l.Decrypt(flipped, nil); err == nil {
			t.Fatalf("Decrypt(bit %d flipped) error = nil, want an error", i)
		}
	}
	for n := range len(ct) {
		if _, err := l.Decrypt(ct[:n], nil); err == nil {
			t.Fatalf("Decrypt(truncated to %d bytes) error = nil, want an error", n)
		}
	}
}

func TestLocalStringHasNoKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek")
	l, err := kek.CreateLocal(path, bytes.NewReader(bytes.Repeat([]byte{0xAB}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	if s := l.String(); strings.Contains(strings.ToLower(s), "abab") || !strings.Contains(s, path) {
		t.Errorf("String() = %q, want the path and no key bytes", s)
	}
}
