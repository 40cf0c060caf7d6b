package fpe

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"math/big"
	"math/bits"
	"sync"
	"sync/atomic"
)

// FF1 is the FF1 mode of SP 800-38G Rev. 1 with AES-128, -192 or -256 and a
// fixed radix. Tweaks have any length up to 1024 bytes. An FF1 is safe for
// concurrent use.
type FF1 struct {
	block  cipher.Block
	radix  int
	minLen int
	// rounds pools *ff1Round, so that a call allocates only its output.
	rounds sync.Pool
	// lastP caches the encryption of the block P for the last lengths
	// seen. P depends only on the radix and the lengths, and values of one
	// column often share their length.
	lastP atomic.Pointer[encryptedP]
}

// encryptedP is CIPH_K(P) for the half length u, input length n and tweak
// length t, with reducers modulo radix^u and radix^(n-u) when these fit in
// 64 bits.
type encryptedP struct {
	u, n, t int
	block   [16]byte
	mu, mv  reducer
}

// NewFF1 returns an FF1 cipher for numerals in base radix. The key is 16, 24
// or 32 bytes and is not retained beyond the AES key schedule.
func NewFF1(key []byte, radix int) (*FF1, error) {
	minLen, err := checkRadix(radix)
	if err != nil {
		return nil, err
	}
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w: %d bytes", ErrKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, ErrKeySize
	}
	return &FF1{block: block, radix: radix, minLen: max(minLen, 2)}, nil
}

// Radix returns the radix the cipher was created with.
func (c *FF1) Radix() int { return c.radix }

// MinLen returns the shortest input length the cipher accepts.
func (c *FF1) MinLen() int { return c.minLen }

// Encrypt returns the FF1 encryption of the numerals x under tweak.
func (c *FF1) Encrypt(x []uint16, tweak []byte) ([]uint16, error) {
	return c.crypt(x, tweak, false)
}

// Decrypt returns the FF1 decryption of the numerals x under tweak.
func (c *FF1) Decrypt(x []uint16, tweak []byte) ([]uint16, error) {
	return c.crypt(x, tweak, true)
}

// ff1Round holds the per-call state of the FF1 round function: the CBC-MAC
// chaining value after P and the constant prefix of Q, and the Q suffix that
// each round rewrites with [i] and NUM(B). Its buffers are reused by later
// calls.
type ff1Round struct {
	block cipher.Block
	h     [16]byte // CBC-MAC state before the variable blocks of Q
	tail  []byte   // variable blocks of Q: tweak remainder, zero pad, [i], [NUM(B)]^b
	b, d  int
	s     []byte // d bytes of S
	r     [16]byte
	x     [16]byte
	q     []byte // backing array of Q
}

// maxPooledQ bounds the Q buffer a pooled round keeps, so that one call
// with a long tweak does not pin its buffer.
const maxPooledQ = 256

// reset prepares st for one call. It builds P and Q and folds the blocks
// of Q that do not change between rounds into the chaining value.
func (st *ff1Round) reset(block cipher.Block, cache *atomic.Pointer[encryptedP], radix, u, n, b int, tweak []byte) {
	t := len(tweak)
	d := 4*((b+3)/4) + 4
	pad := ((-t-b-1)%16 + 16) % 16
	q := grow(st.q, t+pad+1+b)
	copy(q, tweak)

	st.block, st.b, st.d, st.q = block, b, d, q
	st.s = grow(st.s, ((d+15)/16)*16)
	st.h = encryptP(block, cache, radix, u, n, t).block

	// Blocks of Q that end before the round byte [i] are the same in every
	// round, so they are folded into the chaining value once.
	fixed := (t + pad) / 16 * 16
	for off := 0; off < fixed; off += 16 {
		subtle16(&st.h, q[off:off+16])
		block.Encrypt(st.h[:], st.h[:])
	}
	st.tail = q[fixed:]
}

// grow returns buf resized to n zero bytes, reusing its array when it is
// large enough.
func grow(buf []byte, n int) []byte {
	if cap(buf) < n {
		return make([]byte, n)
	}
	buf = buf[:n]
	clear(buf)
	return buf
}

// encryptP returns CIPH_K(P) for radix, half length u, input length n and
// tweak length t, from cache when its lengths are the last ones seen.
func encryptP(block cipher.Block, cache *atomic.Pointer[encryptedP], radix, u, n, t int) *encryptedP {
	if last := cache.Load(); last != nil && last.u == u && last.n == n && last.t == t {
		return last
	}
	p := [16]byte{1, 2, 1, byte(radix >> 16), byte(radix >> 8), byte(radix), 10, byte(u)}
	binary.BigEndian.PutUint32(p[8:12], uint32(n))
	binary.BigEndian.PutUint32(p[12:16], uint32(t))
	e := &encryptedP{u: u, n: n, t: t}
	block.Encrypt(e.block[:], p[:])
	if mv, ok := powUint64(radix, n-u); ok {
		mu, _ := powUint64(radix, u)
		e.mu, e.mv = newReducer(mu), newReducer(mv)
	}
	cache.Store(e)
	return e
}

// getRound returns a pooled round state set up for one call.
func (c *FF1) getRound(u, n, b int, tweak []byte) *ff1Round {
	st, _ := c.rounds.Get().(*ff1Round)
	if st == nil {
		st = &ff1Round{}
	}
	st.reset(c.block, &c.lastP, c.radix, u, n, b, tweak)
	return st
}

// putRound clears the tweak and numerals from st and pools it.
func (c *FF1) putRound(st *ff1Round) {
	if cap(st.q) > maxPooledQ {
		st.q = nil
	}
	clear(st.q)
	clear(st.s)
	st.tail = nil
	st.r, st.x = [16]byte{}, [16]byte{}
	c.rounds.Put(st)
}

// subtle16 XORs src into dst, eight bytes at a time.
func subtle16(dst *[16]byte, src []byte) {
	_ = src[15]
	lo := binary.LittleEndian.Uint64(dst[:8]) ^ binary.LittleEndian.Uint64(src[:8])
	hi := binary.LittleEndian.Uint64(dst[8:]) ^ binary.LittleEndian.Uint64(src[8:16])
	binary.LittleEndian.PutUint64(dst[:8], lo)
	binary.LittleEndian.PutUint64(dst[8:], hi)
}

// prf computes S for round i; numB must already be in the last b bytes of
// tail. It returns the first d bytes of S.
func (st *ff1Round) prf(i int) []byte {
	st.tail[len(st.tail)-st.b-1] = byte(i)
	st.r = st.h
	for off := 0; off < len(st.tail); off += 16 {
		subtle16(&st.r, st.tail[off:off+16])
		st.block.Encrypt(st.r[:], st.r[:])
	}
	copy(st.s, st.r[:])
	for j := 1; j*16 < st.d; j++ {
		st.x = st.r
		var ctr [16]byte
		binary.BigEndian.PutUint64(ctr[8:], uint64(j))
		subtle16(&st.x, ctr[:])
		st.block.Encrypt(st.s[j*16:], st.x[:])
	}
	return st.s[:st.d]
}

func (c *FF1) crypt(x []uint16, tweak []byte, decrypt bool) ([]uint16, error) {
	n := len(x)
	switch {
	case n < c.minLen:
		return nil, ErrDomainTooSmall
	case n > maxFF1Len:
		return nil, fmt.Errorf("%w: %d numerals, maximum %d", ErrLength, n, maxFF1Len)
	case len(tweak) > maxTweakLen:
		return nil, fmt.Errorf("%w: %d bytes, maximum %d", ErrTweak, len(tweak), maxTweakLen)
	}
	if err := checkNumerals(x, c.radix); err != nil {
		return nil, err
	}

	u := n / 2
	v := n - u
	mv, fast := powUint64(c.radix, v)
	fast = fast && !forceBig
	out := make([]uint16, n)
	if fast {
		c.fast(x, out, tweak, u, mv, decrypt)
		return out, nil
	}

	b := (log2Ceil(c.radix, v) + 7) / 8
	st := c.getRound(u, n, b, tweak)
	c.slow(st, x, out, u, decrypt)
	c.putRound(st)
	return out, nil
}

// fast runs the ten Feistel rounds with both halves held in uint64 values.
// NUM(B) then takes b <= 8 bytes, so the variable part of Q, [i] and
// NUM(B), always falls in its last block and S takes d <= 12 bytes of a
// single CIPH output. The round function is thus one AES block on a
// chaining value kept in two words.
func (c *FF1) fast(x, out []uint16, tweak []byte, u int, mv uint64, decrypt bool) {
	r := uint64(c.radix)
	n, t := len(x), len(tweak)
	b := (bits.Len64(mv-1) + 7) / 8
	d := 4*((b+3)/4) + 4
	pad := ((-t-b-1)%16 + 16) % 16

	// Fold the blocks of Q before its last one, which hold only tweak and
	// zero padding, into the CBC-MAC chaining value. One array serves as
	// chaining value and round block: a slice passed to the cipher escapes,
	// so each array costs an allocation.
	p := encryptP(c.block, &c.lastP, c.radix, u, n, t)
	blk := p.block
	fixed := (t + pad) / 16 * 16
	for off := 0; off < fixed; off += 16 {
		var q [16]byte
		copy(q[:], tweak[off:min(t, off+16)])
		subtle16(&blk, q[:])
		c.block.Encrypt(blk[:], blk[:])
	}
	var last [16]byte
	if fixed < t {
		copy(last[:], tweak[fixed:])
	}
	baseHi := binary.BigEndian.Uint64(blk[:8]) ^ binary.BigEndian.Uint64(last[:8])
	baseLo := binary.BigEndian.Uint64(blk[8:]) ^ binary.BigEndian.Uint64(last[8:])

	a := numUint64(x[:u], r)
	bv := numUint64(x[u:], r)
	for k := range 10 {
		i, m := k, p.mu
		if decrypt {
			i = 9 - k
		}
		if i%2 == 1 {
			m = p.mv
		}

		// Q carries NUM(B) when encrypting and NUM(A) when decrypting, in
		// its last b bytes, after the round byte [i].
		in := bv
		if decrypt {
			in = a
		}
		hi, lo := baseHi, baseLo^in
		if b < 8 {
			lo ^= uint64(i) << (8 * b)
		} else {
			hi ^= uint64(i)
		}
		binary.BigEndian.PutUint64(blk[:8], hi)
		binary.BigEndian.PutUint64(blk[8:], lo)
		c.block.Encrypt(blk[:], blk[:])

		var y uint64
		if d == 8 {
			y = m.mod(binary.BigEndian.Uint64(blk[:8]))
		} else {
			_, y = bits.Div64(m.mod(uint64(binary.BigEndian.Uint32(blk[:4]))), binary.BigEndian.Uint64(blk[4:12]), m.m)
		}

		if decrypt {
			a, bv = subMod(bv, y, m.m), a
		} else {
			a, bv = bv, addMod(a, y, m.m)
		}
	}
	strUint64(out[:u], a, r)
	strUint64(out[u:], bv, r)
}

// slow runs the ten Feistel rounds with big integers.
func (c *FF1) slow(st *ff1Round, x, out []uint16, u int, decrypt bool) {
	a := numBig(x[:u], c.radix, false)
	b := numBig(x[u:], c.radix, false)
	r := big.NewInt(int64(c.radix))
	mu := new(big.Int).Exp(r, big.NewInt(int64(u)), nil)
	mv := new(big.Int).Exp(r, big.NewInt(int64(len(x)-u)), nil)
	numB := st.tail[len(st.tail)-st.b:]
	y := new(big.Int)

	for k := range 10 {
		i, m := k, mu
		if decrypt {
			i = 9 - k
		}
		if i%2 == 1 {
			m = mv
		}

		in := b
		if decrypt {
			in = a
		}
		in.FillBytes(numB)
		y.SetBytes(st.prf(i))

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
	strBig(out[:u], a, c.radix, false)
	strBig(out[u:], b, c.radix, false)
}
