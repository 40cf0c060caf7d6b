package keyset_test

import (
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	tinkkeyset "github.com/tink-crypto/tink-go/v2/keyset"
)

// BenchmarkEncrypt compares Keyset.Encrypt, which also counts each
// encryption for the rotation policy, with the bare Tink AES-256-GCM AEAD
// in the same run, for a 1 KiB message from parallel goroutines.
func BenchmarkEncrypt(b *testing.B) {
	msg := make([]byte, 1024)

	b.Run("tink-aead", func(b *testing.B) {
		handle, err := tinkkeyset.NewHandle(aead.AES256GCMKeyTemplate())
		if err != nil {
			b.Fatal(err)
		}
		primitive, err := aead.New(handle)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(msg)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := primitive.Encrypt(msg, nil); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})

	b.Run("keyset", func(b *testing.B) {
		ks, _ := createKeyset(b, newLocalKEK(b))
		b.SetBytes(int64(len(msg)))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := ks.Encrypt(msg, nil); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
