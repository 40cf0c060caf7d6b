package transform

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"errors"
)

// sivEncrypter computes AES-SIV encryptions (RFC 5297) with a 64-byte key
// and one fixed associated data string. It gives the same output as Tink's
// AES-SIV with the same key, but computes the S2V steps that depend only
// on the associated data once instead of for every value, and keeps both
// AES key schedules. Decryption stays with Tink.
//
// Key layout, as in Tink and RFC 5297: the first 32 bytes key CMAC (S2V),
// the last 32 bytes key CTR. Output layout: the 16-byte synthetic IV V,
// then the ciphertext, as long as the plaintext.
//
// A sivEncrypter is immutable and safe for concurrent use.
type sivEncrypter struct {
	mac *cmacKey     // AES-256 under the S2V key
	ctr cipher.Block // AES-256 under the CTR key
	// prefix is the S2V state after the associated data:
	// dbl(CMAC(zero block)) xor CMAC(ad).
	prefix [16]byte
}

func newSIVEncrypter(key, ad []byte) (*sivEncrypter, error) {
	if len(key) != sivKeyLen {
		return nil, errors.New("aes-siv: key must be 64 bytes")
	}
	mac, err := newCMACKey(key[:32])
	if err != nil {
		return nil, err
	}
	ctr, err := aes.NewCipher(key[32:])
	if err != nil {
		return nil, err
	}
	s := &sivEncrypter{mac: mac, ctr: ctr}

	var zero [16]byte
	s.prefix = mac.sum(zero[:])
	dbl(&s.prefix)
	adMAC := mac.sum(ad)
	subtle.XORBytes(s.prefix[:], s.prefix[:], adMAC[:])
	return s, nil
}

// appendEncrypt appends V followed by the encryption of plaintext to dst.
func (s *sivEncrypter) appendEncrypt(dst []byte, plaintext string) []byte {
	// S2V starts from prefix, which already covers the associated data. T
	// is the plaintext with prefix xored onto its last 16 bytes, or
	// dbl(prefix) xor the padded plaintext when it is shorter than 16.
	var stack [256]byte
	var t []byte
	if len(plaintext) >= 16 {
		t = append(stack[:0], plaintext...)
		tail := t[len(t)-16:]
		subtle.XORBytes(tail, tail, s.prefix[:])
	} else {
		d := s.prefix
		dbl(&d)
		t = stack[:16]
		copy(t, plaintext)
		t[len(plaintext)] = 0x80
		clear(t[len(plaintext)+1 : 16])
		subtle.XORBytes(t, t, d[:])
	}
	v := s.mac.sum(t)
	clear(t)

	// CTR mode starts from V with the top bits of its last two 32-bit
	// words cleared.
	q := v
	q[8] &= 0x7f
	q[12] &= 0x7f
	start := len(dst)
	dst = append(dst, v[:]...)
	dst = append(dst, plaintext...)
	body := dst[start+16:]
	cipher.NewCTR(s.ctr, q[:]).XORKeyStream(body, body)
	return dst
}
