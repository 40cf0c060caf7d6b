package transform_test

import (
	cryptorand "crypto/rand"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ward.dev/ward/crypto/kek"
	"ward.dev/ward/crypto/keyset"
	"ward.dev/ward/masking/transform"
)

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "masking.key")
	if err := transform.GenerateKeyFile(path, rand.NewChaCha8([32]byte{})); err != nil {
		t.Fatal(err)
	}
	if err := transform.GenerateKeyFile(path, rand.NewChaCha8([32]byte{})); err == nil {
		t.Error("GenerateKeyFile over an existing file succeeded, want an error")
	}
	if _, err := transform.LoadKeyFile(path, nil); err != nil {
		t.Fatalf("LoadKeyFile: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := transform.LoadKeyFile(path, nil); !errors.Is(err, transform.ErrKeyFile) {
		t.Errorf("LoadKeyFile(mode 0644) error = %v, want ErrKeyFile", err)
	}
}

func TestSealedKeyFile(t *testing.T) {
	dir := t.TempDir()
	k, err := kek.CreateLocal(filepath.Join(dir, "kek"), cryptorand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keyset.Create(filepath.Join(dir, "keyset"), k)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "masking.key")
	if err := transform.SealKeyFile(path, ks, cryptorand.Reader); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), "ward-masking-key-sealed v1\n") {
		t.Errorf("sealed key file starts %q", data[:20])
	}

	keys, err := transform.LoadKeyFile(path, ks)
	if err != nil {
		t.Fatalf("LoadKeyFile(sealed): %v", err)
	}
	if _, err := transform.New(transform.Spec{Name: "hash"}, keys); err != nil {
		t.Errorf("New(hash) with the sealed key: %v", err)
	}
	if _, err := transform.LoadKeyFile(path, nil); !errors.Is(err, transform.ErrKeyFile) {
		t.Errorf("LoadKeyFile(sealed, no keyset) error = %v, want ErrKeyFile", err)
	}

	other, err := keyset.Create(filepath.Join(dir, "other"), k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := transform.LoadKeyFile(path, other); !errors.Is(err, transform.ErrKeyFile) {
		t.Errorf("LoadKeyFile(sealed, other keyset) error = %v, want ErrKeyFile", err)
	}
}
