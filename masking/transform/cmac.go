package transform

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
)

// cmacKey computes AES-CMAC (RFC 4493) under one AES key. It is immutable
// and safe for concurrent use.
type cmacKey struct {
	block cipher.Block
	// k1 and k2 are the subkeys for a complete and a padded last block.
	k1, k2 [16]byte
}

func newCMACKey(key []byte) (*cmacKey, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	c := &cmacKey{block: block}
	var l [16]byte
	block.Encrypt(l[:], l[:])
	c.k1 = l
	dbl(&c.k1)
	c.k2 = c.k1
	dbl(&c.k2)
	return c, nil
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

// sum returns AES-CMAC(msg).
func (c *cmacKey) sum(msg []byte) [16]byte {
	var x [16]byte
	for len(msg) > 16 {
		xor16(&x, msg)
		c.block.Encrypt(x[:], x[:])
		msg = msg[16:]
	}

	// The last block is xored with K1 when it is complete, and padded with
	// 0x80 and zeros and xored with K2 otherwise. An empty message is one
	// incomplete block.
	var last [16]byte
	copy(last[:], msg)
	sub := &c.k1
	if len(msg) < 16 {
		last[len(msg)] = 0x80
		sub = &c.k2
	}
	xor16(&last, sub[:])
	xor16(&x, last[:])
	c.block.Encrypt(x[:], x[:])
	return x
}

// xor16 xors the first 16 bytes of b into x. It spares the call overhead
// of subtle.XORBytes, which shows on messages of one or two blocks.
func xor16(x *[16]byte, b []byte) {
	le := binary.LittleEndian
	le.PutUint64(x[:8], le.Uint64(x[:8])^le.Uint64(b[:8]))
	le.PutUint64(x[8:], le.Uint64(x[8:])^le.Uint64(b[8:16]))
}

// expand appends n bytes derived from parts to dst, a pseudorandom
// function of parts under the key. Block i (from 1) of the output is
// AES-CMAC of the byte i followed by each part with its length in front
// as a uvarint, so n may be at most 255 blocks of 16 bytes. The lengths
// keep parts that contain any byte from running into each other.
func (c *cmacKey) expand(dst []byte, n int, parts ...string) []byte {
	var stack [128]byte
	msg := append(stack[:0], 0)
	for _, p := range parts {
		msg = binary.AppendUvarint(msg, uint64(len(p)))
		msg = append(msg, p...)
	}
	for i := 1; n > 0; i++ {
		msg[0] = byte(i)
		b := c.sum(msg)
		k := min(n, len(b))
		dst = append(dst, b[:k]...)
		n -= k
	}
	clear(msg)
	return dst
}
