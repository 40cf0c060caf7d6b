package kek

import (
	"bytes"
	"slices"
	"testing"

	"ward.dev/ward/crypto/internal/gcmvectors"
)

// TestLocalWycheproof runs the Wycheproof AES-GCM vectors that fit the local
// KEK's layout (12-byte IV, 16-byte tag, 128- or 256-bit key) through
// Local.Decrypt, and every valid one through an Encrypt and Decrypt round trip.
func TestLocalWycheproof(t *testing.T) {
	vectors, skipped, err := gcmvectors.Load(12, 16, 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	if len(vectors) < 100 {
		t.Fatalf("gcmvectors.Load returned %d vectors, want at least 100", len(vectors))
	}
	t.Logf("%d vectors, %d skipped for other IV or key sizes", len(vectors), skipped)

	for _, v := range vectors {
		l, err := newLocal("wycheproof", v.Key)
		if err != nil {
			t.Fatalf("tcId %d: newLocal error: %v", v.ID, err)
		}
		ciphertext := slices.Concat(v.IV, v.CT, v.Tag)

		got, err := l.Decrypt(ciphertext, v.AAD)
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

		sealed, err := l.Encrypt(v.Msg, v.AAD)
		if err != nil {
			t.Fatalf("tcId %d: Encrypt error: %v", v.ID, err)
		}
		if len(sealed) != 12+len(v.Msg)+16 {
			t.Errorf("tcId %d: Encrypt length = %d, want %d", v.ID, len(sealed), 12+len(v.Msg)+16)
		}
		if back, err := l.Decrypt(sealed, v.AAD); err != nil || !bytes.Equal(back, v.Msg) {
			t.Errorf("tcId %d: Decrypt(Encrypt(msg)) = %x, %v, want %x", v.ID, back, err, v.Msg)
		}
	}
}
