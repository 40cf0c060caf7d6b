package keyset

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead/aesgcm"
	"github.com/tink-crypto/tink-go/v2/insecuresecretdataaccess"
	tinkkeyset "github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/secretdata"

	"ward.dev/ward/crypto/internal/gcmvectors"
	"ward.dev/ward/crypto/kek"
)

// keyBytes returns the raw AES keys of a keyset, for tests that look for
// them where they must not be.
func keyBytes(t *testing.T, ks *Keyset) [][]byte {
	t.Helper()
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	var keys [][]byte
	for i := range ks.handle.Len() {
		entry, err := ks.handle.Entry(i)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, entry.Key().(*aesgcm.Key).KeyBytes().Data(insecuresecretdataaccess.Token{}))
	}
	return keys
}

func TestNoPlaintextKeyInFiles(t *testing.T) {
	dir := t.TempDir()
	k, err := kek.CreateLocal(filepath.Join(dir, "kek"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := Create(filepath.Join(dir, "keyset.bin"), k)
	if err != nil {
		t.Fatal(err)
	}
	keys := keyBytes(t, ks)
	if len(keys) != 1 || len(keys[0]) != 32 {
		t.Fatalf("keyBytes = %d keys, want one 32-byte key", len(keys))
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range keys {
			// Any 8-byte window of the key would already be a leak.
			for i := 0; i+8 <= len(key); i++ {
				if bytes.Contains(data, key[i:i+8]) {
					t.Fatalf("file %s contains bytes %d..%d of a data key", e.Name(), i, i+8)
				}
			}
		}
	}
}

// keysetWithKey builds a Keyset around one AES-GCM key with fixed bytes and
// id, as ward composes it, so published vectors can be run through it.
func keysetWithKey(t *testing.T, raw []byte, id uint32) *Keyset {
	t.Helper()
	params, err := aesgcm.NewParameters(aesgcm.ParametersOpts{
		KeySizeInBytes: len(raw), IVSizeInBytes: 12, TagSizeInBytes: 16, Variant: aesgcm.VariantTink,
	})
	if err != nil {
		t.Fatal(err)
	}
	key, err := aesgcm.NewKey(secretdata.NewBytesFromData(raw, insecuresecretdataaccess.Token{}), id, params)
	if err != nil {
		t.Fatal(err)
	}
	m := tinkkeyset.NewManager()
	keyID, err := m.AddKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetPrimary(keyID); err != nil {
		t.Fatal(err)
	}
	handle, err := m.Handle()
	if err != nil {
		t.Fatal(err)
	}
	ks, err := newKeyset("vectors", nil, handle, nil)
	if err != nil {
		t.Fatalf("newKeyset error: %v", err)
	}
	// The keyset has no file, so it must not try to record usage.
	ks.ceiling = math.MaxUint64
	return ks
}

// TestWycheproofAESGCM runs the Wycheproof AES-256-GCM vectors with a 12-byte
// IV and 16-byte tag through Keyset.Decrypt, with the Tink prefix that the
// keyset adds in front, and every valid one through an Encrypt and Decrypt
// round trip.
func TestWycheproofAESGCM(t *testing.T) {
	vectors, skipped, err := gcmvectors.Load(12, 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	if len(vectors) < 50 {
		t.Fatalf("gcmvectors.Load returned %d vectors, want at least 50", len(vectors))
	}
	t.Logf("%d AES-256 vectors, %d skipped for other IV or key sizes", len(vectors), skipped)

	const id = 0x0badf00d
	prefix := binary.BigEndian.AppendUint32([]byte{0x01}, id)
	for _, v := range vectors {
		ks := keysetWithKey(t, v.Key, id)
		ciphertext := slices.Concat(prefix, v.IV, v.CT, v.Tag)

		got, err := ks.Decrypt(ciphertext, v.AAD)
		switch {
		case v.Valid && err != nil:
			t.Errorf("tcId %d (%s): Decrypt error = %v, want %x", v.ID, v.Comment, err, v.Msg)
		case v.Valid && !bytes.Equal(got, v.Msg):
			t.Errorf("tcId %d (%s): Decrypt = %x, want %x", v.ID, v.Comment, got, v.Msg)
		case !v.Valid && err == nil:
			t.Errorf("tcId %d (%s): Decrypt of an invalid vector error = nil, want an error", v.ID, v.Comment)
		}
		if !v.Valid {
			continue
		}

		sealed, err := ks.Encrypt(v.Msg, v.AAD)
		if err != nil {
			t.Fatalf("tcId %d: Encrypt error: %v", v.ID, err)
		}
		if !bytes.HasPrefix(sealed, prefix) || len(sealed) != len(prefix)+12+len(v.Msg)+16 {
			t.Errorf("tcId %d: Encrypt = %d bytes starting %x, want prefix %x and %d bytes", v.ID, len(sealed), sealed[:5], prefix, len(prefix)+12+len(v.Msg)+16)
		}
		if back, err := ks.Decrypt(sealed, v.AAD); err != nil || !bytes.Equal(back, v.Msg) {
			t.Errorf("tcId %d: Decrypt(Encrypt(msg)) = %x, %v, want %x", v.ID, back, err, v.Msg)
		}
	}
}
