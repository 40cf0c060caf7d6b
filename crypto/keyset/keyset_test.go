package keyset_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"ward.dev/ward/crypto/kek"
	"ward.dev/ward/crypto/keyset"
)

// newLocalKEK creates a local KEK in a fresh directory.
func newLocalKEK(t testing.TB) *kek.Local {
	t.Helper()
	k, err := kek.CreateLocal(filepath.Join(t.TempDir(), "kek"), rand.Reader)
	if err != nil {
		t.Fatalf("CreateLocal error: %v", err)
	}
	return k
}

func createKeyset(t testing.TB, k kek.KEK) (*keyset.Keyset, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keyset.bin")
	ks, err := keyset.Create(path, k)
	if err != nil {
		t.Fatalf("Create(%s) error: %v", path, err)
	}
	return ks, path
}

func TestRoundTripAcrossOpen(t *testing.T) {
	k := newLocalKEK(t)
	ks, path := createKeyset(t, k)

	ct, err := ks.Encrypt([]byte("CA private key"), []byte("ca.key"))
	if err != nil {
		t.Fatalf("Encrypt error: %v", err)
	}
	reopened, err := keyset.Open(path, k)
	if err != nil {
		t.Fatalf("Open(%s) error: %v", path, err)
	}
	pt, err := reopened.Decrypt(ct, []byte("ca.key"))
	if err != nil {
		t.Fatalf("Decrypt error: %v", err)
	}
	if string(pt) != "CA private key" {
		t.Errorf("Decrypt = %q, want %q", pt, "CA private key")
	}
}

func TestDecryptRejects(t *testing.T) {
	ks, _ := createKeyset(t, newLocalKEK(t))
	other, _ := createKeyset(t, newLocalKEK(t))
	ct, err := ks.Encrypt([]byte("JWT signing key"), []byte("jwt.key"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		ks   *keyset.Keyset
		ct   []byte
		aad  []byte
	}{
		{"wrong associated data", ks, ct, []byte("ca.key")},
		{"missing associated data", ks, ct, nil},
		{"other keyset", other, ct, []byte("jwt.key")},
		{"empty ciphertext", ks, nil, []byte("jwt.key")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.ks.Decrypt(tt.ct, tt.aad); err == nil {
				t.Errorf("Decrypt(%s) error = nil, want an error", tt.name)
			}
		})
	}
}

func TestCiphertextBitFlipAndTruncation(t *testing.T) {
	ks, _ := createKeyset(t, newLocalKEK(t))
	aad := []byte("aad")
	ct, err := ks.Encrypt([]byte("secret"), aad)
	if err != nil {
		t.Fatal(err)
	}

	for i := range len(ct) * 8 {
		flipped := bytes.Clone(ct)
		flipped[i/8] ^= 1 << (i % 8)
		if _, err := ks.Decrypt(flipped, aad); err == nil {
			t.Fatalf("Decrypt(bit %d flipped) error = nil, want an error", i)
		}
	}
	for n := range len(ct) {
		if _, err := ks.Decrypt(ct[:n], aad); err == nil {
			t.Fatalf("Decrypt(truncated to %d bytes) error = nil, want an error", n)
		}
	}
}

func TestSealedFileBitFlipAndTruncation(t *testing.T) {
	k := newLocalKEK(t)
	_, path := createKeyset(t, k)
	sealed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	openWith := func(content []byte) error {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := keyset.Open(path, k)
		return err
	}
	for i := range len(sealed) * 8 {
		flipped := bytes.Clone(sealed)
		flipped[i/8] ^= 1 << (i % 8)
		if err := openWith(flipped); err == nil {
			t.Fatalf("Open(sealed file with bit %d flipped) error = nil, want an error", i)
		}
	}
	for n := range len(sealed) {
		if err := openWith(sealed[:n]); err == nil {
			t.Fatalf("Open(sealed file truncated to %d bytes) error = nil, want an error", n)
		}
	}
	if err := openWith(sealed); err != nil {
		t.Errorf("Open(restored file) error = %v, want nil", err)
	}
}

func TestFileModeAndOverwrite(t *testing.T) {
	k := newLocalKEK(t)
	_, path := createKeyset(t, k)

	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Errorf("Create file mode = %04o, want 0600", got)
	}

	before, _ := os.ReadFile(path)
	if _, err := keyset.Create(path, k); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create(existing) error = %v, want fs.ErrExist", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Errorf("Create(existing) changed the file")
	}

	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("Create left a temporary file %s", e.Name())
		}
	}
}

// sealedKEK is a KEK that cannot be reached, like an HSM that is gone.
type sealedKEK struct{}

func (sealedKEK) Encrypt([]byte, []byte) ([]byte, error) {
	return nil, fmt.Errorf("test HSM unplugged: %w", kek.ErrSealed)
}

func (sealedKEK) Decrypt([]byte, []byte) ([]byte, error) {
	return nil, fmt.Errorf("test HSM unplugged: %w", kek.ErrSealed)
}

func (sealedKEK) String() string { return "test HSM" }

func TestOpenErrors(t *testing.T) {
	k := newLocalKEK(t)
	_, path := createKeyset(t, k)

	renamed := filepath.Join(filepath.Dir(path), "renamed.bin")
	if err := os.Link(path, renamed); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.bin")
	if err := os.WriteFile(garbage, []byte("not a keyset at all \xff\xff\xff"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		path     string
		kek      kek.KEK
		want     error
		contains string
	}{
		{"wrong KEK", path, newLocalKEK(t), kek.ErrSealed, "wrong KEK"},
		{"unreachable KEK", path, sealedKEK{}, kek.ErrSealed, "test HSM unplugged"},
		{"renamed file", renamed, k, kek.ErrSealed, "renamed"},
		{"missing file", filepath.Join(t.TempDir(), "none"), k, fs.ErrNotExist, "none"},
		{"not a keyset", garbage, k, keyset.ErrCorrupt, "garbage.bin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := keyset.Open(tt.path, tt.kek)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open(%s) error = %v, want %v", tt.name, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("Open(%s) error = %q, want it to contain %q", tt.name, err, tt.contains)
			}
		})
	}
}

func TestCreateWithSealedKEK(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyset.bin")
	_, err := keyset.Create(path, sealedKEK{})
	if !errors.Is(err, kek.ErrSealed) {
		t.Fatalf("Create(sealed KEK) error = %v, want kek.ErrSealed", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Create(sealed KEK) left a file: stat error %v", err)
	}
}

func TestConcurrentEncryptDecrypt(t *testing.T) {
	ks, _ := createKeyset(t, newLocalKEK(t))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				msg := fmt.Appendf(nil, "goroutine %d message %d", g, i)
				ct, err := ks.Encrypt(msg, nil)
				if err != nil {
					errs <- err
					return
				}
				pt, err := ks.Decrypt(ct, nil)
				if err != nil || !bytes.Equal(pt, msg) {
					errs <- fmt.Errorf("Decrypt = %q, %v, want %q", pt, err, msg)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
