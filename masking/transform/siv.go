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
	mac cipher.Block // AES-256 under the S2V key
	ctr cipher.Block // AES-256 under the CTR key
	// k1 and k2 are the CMAC subkeys (RFC 4493).
	k1, k2 [16]byte
	// prefix is the S2V state after the associated data:
	// dbl(CMAC(zero block)) xor CMAC(ad).
	prefix [16]byte
}

func newSIVEncrypter(key, ad []byte) (*sivEncrypter, error) {
	if len(key) != sivKeyLen {
		return nil, errors.New("aes-siv: key must be 64 bytes")
	}
	mac, err := aes.NewCipher(key[:32])
	if err != nil {
		return nil, err
	}
	ctr, err := aes.NewCipher(key[32:])
	if err != nil {
		return nil, err
	}
	s := &sivEncrypter{mac: mac, ctr: ctr}

	var l [16]byte
	mac.Encrypt(l[:], l[:])
	s.k1 = l
	dbl(&s.k1)
	s.k2 = s.k1
	dbl(&s.k2)

	var zero [16]byte
	s.prefix = s.cmac(zero[:])
	dbl(&s.prefix)
	adMAC := s.cmac(ad)
	subtle.XORBytes(s.prefix[:], s.prefix[:], adMAC[:])
	return s, nil
}

// dbl multiplies b by x in GF(2^128), the doubling of RFC 5297 and RFC
// 4493, without a branch on the secret top bit.
func dbl(b *[16]byte) {
	carry := b[0] >> 7
	for i := range 15 {
		b[i] = b[i]<<1 | b[i+1]>>7
	}
	b[15] = b[15]<<1 ^ 0x87&-carry
}

// cmac returns AES-CMAC(msg) (RFC 4493) under the S2V key.
func (s *sivEncrypter) cmac(msg []byte) [16]byte {
	var x [16]byte
	for len(msg) > 16 {
		subtle.XORBytes(x[:], x[:], msg[:16])
		s.mac.Encrypt(x[:], x[:])
		msg = msg[16:]
	}

	// The last block is xored with K1 when it is complete, and padded with
	// 0x80 and zeros and xored with K2 otherwise. An empty message is one
	// incomplete block.
	var last [16]byte
	copy(last[:], msg)
	sub := &s.k1
	if len(msg) < 16 {
		last[len(msg)] = 0x80
		sub = &s.k2
	}
	subtle.XORBytes(last[:], last[:], sub[:])
	subtle.XORBytes(x[:], x[:], last[:])
	s.mac.Encrypt(x[:], x[:])
	return x
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
	v := s.cmac(t)
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
