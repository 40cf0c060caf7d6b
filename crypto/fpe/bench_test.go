package fpe_test

import (
	"crypto/aes"
	"crypto/cipher"
	"testing"

	"ward.dev/ward/crypto/fpe"
)

// BenchmarkCardNumber encrypts 16-digit numbers with FF1 and FF3-1 and, as
// the baseline in the same run, seals 16-byte values with AES-128-GCM.
func BenchmarkCardNumber(b *testing.B) {
	key := make([]byte, 16)
	x := []uint16{4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	tweak := make([]byte, 7)

	b.Run("ff1", func(b *testing.B) {
		c, _ := fpe.NewFF1(key, 10)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Encrypt(x, tweak); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ff3-1", func(b *testing.B) {
		c, _ := fpe.NewFF31(key, 10)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Encrypt(x, tweak); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("aes-gcm-baseline", func(b *testing.B) {
		block, _ := aes.NewCipher(key)
		aead, _ := cipher.NewGCM(block)
		nonce := make([]byte, aead.NonceSize())
		pt := []byte("4111111111111111")
		dst := make([]byte, 0, 64)
		b.ReportAllocs()
		for b.Loop() {
			dst = aead.Seal(dst[:0], nonce, pt, nil)
		}
	})
}
