package fpe

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"math/big"
)

// FF31TweakLen is the FF3-1 tweak length in bytes (56 bits).
const FF31TweakLen = 7

// FF31 is the FF3-1 mode of SP 800-38G Rev. 1 with AES-128, -192 or -256
// and a fixed radix. Inputs are at most 2*floor(log_radix(2^96)) numerals
// long and tweaks are exactly 7 bytes. An FF31 is safe for concurrent use.
type FF31 struct {
	block  cipher.Block
	radix  int
	minLen int
	maxLen int
}

// NewFF31 returns an FF3-1 cipher for numerals in base radix. The key is
// 16, 24 or 32 bytes; as the standard requires, AES runs under the key with
// its bytes reversed.
func NewFF31(key []byte, radix int) (*FF31, error) {
	minLen, err := checkRadix(radix)
	if err != nil {
		return nil, err
	}
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w: %d bytes", ErrKeySize, len(key))
	}
	rev := make([]byte, len(key))
	for i, k := range key {
		rev[len(key)-1-i] = k
	}
	block, err := aes.NewCipher(rev)
	clear(rev)
	if err != nil {
		return nil, ErrKeySize
	}
	return &FF31{block: block, radix: radix, minLen: max(minLen, 2), maxLen: maxLenFF31(radix)}, nil
}

// Radix returns the radix the cipher was created with.
func (c *FF31) Radix() int { return c.radix }

// MinLen returns the shortest input length the cipher accepts.
func (c *FF31) MinLen() int { return c.minLen }

// MaxLen returns the longest input length the cipher accepts.
func (c *FF31) MaxLen() int { return c.maxLen }

// Encrypt returns the FF3-1 encryption of the numerals x under a 7-byte tweak.
func (c *FF31) Encrypt(x []uint16, tweak []byte) ([]uint16, error) {
	return c.crypt(x, tweak, false)
}

// Decrypt returns the FF3-1 decryption of the numerals x under a 7-byte tweak.
func (c *FF31) Decrypt(x []uint16, tweak []byte) ([]uint16, error) {
	return c.crypt(x, tweak, true)
}

// prf computes y = NUM(REVB(CIPH_REVB(K)(REVB(W xor [i]^4 || [num]^12))))
// into out. Building REVB(P) directly saves the two reversals of P, and
// building it in out lets AES encrypt in place, so no other buffer escapes.
func (c *FF31) prf(w [4]byte, i int, num []byte, out *[16]byte) {
	for j := range 12 {
		out[j] = num[11-j]
	}
	w[3] ^= byte(i)
	for j := range 4 {
		out[15-j] = w[j]
	}
	c.block.Encrypt(out[:], out[:])
	for j := range 8 {
		out[j], out[15-j] = out[15-j], out[j]
	}
}

func (c *FF31) crypt(x []uint16, tweak []byte, decrypt bool) ([]uint16, error) {
	n := len(x)
	switch {
	case len(tweak) != FF31TweakLen:
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrTweak, len(tweak), FF31TweakLen)
	case n < c.minLen:
		return nil, ErrDomainTooSmall
	case n > c.maxLen:
		return nil, fmt.Errorf("%w: %d numerals, maximum %d", ErrLength, n, c.maxLen)
	}
	if err := checkNumerals(x, c.radix); err != nil {
		return nil, err
	}

	u := (n + 1) / 2
	v := n - u
	tl := [4]byte{tweak[0], tweak[1], tweak[2], tweak[3] & 0xf0}
	tr := [4]byte{tweak[4], tweak[5], tweak[6], tweak[3] << 4}
	out := make([]uint16, n)

	mu, fast := powUint64(c.radix, u)
	if fast && !forceBig {
		mv, _ := powUint64(c.radix, v)
		c.fast(x, out, u, mu, mv, tl, tr, decrypt)
		return out, nil
	}
	c.slow(x, out, u, tl, tr, decrypt)
	return out, nil
}

func (c *FF31) fast(x, out []uint16, u int, mu, mv uint64, tl, tr [4]byte, decrypt bool) {
	r := uint64(c.radix)
	a := numUint64Rev(x[:u], r)
	b := numUint64Rev(x[u:], r)
	var num [12]byte
	var s [16]byte

	for k := range 8 {
		i := k
		if decrypt {
			i = 7 - k
		}
		m, w := mu, tr
		if i%2 == 1 {
			m, w = mv, tl
		}

		in := b
		if decrypt {
			in = a
		}
		for j := range 8 {
			num[11-j] = byte(in >> (8 * j))
		}
		c.prf(w, i, num[:], &s)
		y := modBytes(s[:], m)

		if decrypt {
			a, b = subMod(b, y, m), a
		} else {
			a, b = b, addMod(a, y, m)
		}
	}
	strUint64Rev(out[:u], a, r)
	strUint64Rev(out[u:], b, r)
}

func (c *FF31) slow(x, out []uint16, u int, tl, tr [4]byte, decrypt bool) {
	a := numBig(x[:u], c.radix, true)
	b := numBig(x[u:], c.radix, true)
	r := big.NewInt(int64(c.radix))
	mu := new(big.Int).Exp(r, big.NewInt(int64(u)), nil)
	mv := new(big.Int).Exp(r, big.NewInt(int64(len(x)-u)), nil)
	var num [12]byte
	var s [16]byte
	y := new(big.Int)

	for k := range 8 {
		i := k
		if decrypt {
			i = 7 - k
		}
		m, w := mu, tr
		if i%2 == 1 {
			m, w = mv, tl
		}

		in := b
		if decrypt {
			in = a
		}
		in.FillBytes(num[:])
		c.prf(w, i, num[:], &s)
		y.SetBytes(s[:])

		var cNew *big.Int
		if decrypt {
			cNew = new(big.Int).Sub(b, y)
		} else {
			cNew = new(big.Int).Add(a, y)
		}
		cNew.Mod(cNew, m)
		if decrypt {
			a, b = cNew, a
		} else {
			a, b = b, cNew
		}
	}
	strBig(out[:u], a, c.radix, true)
	strBig(out[u:], b, c.radix, true)
}
