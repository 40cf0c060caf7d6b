// Package fpe implements the format-preserving encryption modes FF1 and
// FF3-1 of NIST SP 800-38G Rev. 1 over AES.
//
// A plaintext is a string of numerals in base radix (2 to 65536); the
// ciphertext has the same radix and length. [Alphabet] maps characters to
// numerals so that callers can encrypt digits, letters or any set of
// distinct characters.
//
// Security contract: the domain radix^length must be at least one million
// (SP 800-38G Rev. 1, section 5.2), so shorter inputs are rejected with
// [ErrDomainTooSmall], never encrypted. Keys are copied into the AES key
// schedule and not kept otherwise. The package never logs. Errors carry no
// key, plaintext or ciphertext material.
package fpe

import (
	"errors"
	"fmt"
	"math/big"
	"math/bits"
	"unicode/utf8"
)

// Sentinel errors returned by the ciphers and [Alphabet].
var (
	// ErrDomainTooSmall means radix^length is below one million.
	ErrDomainTooSmall = errors.New("fpe: domain smaller than one million values")
	// ErrLength means the input is longer than the mode allows.
	ErrLength = errors.New("fpe: input length out of range")
	// ErrNumeral means the input contains a numeral outside the radix or a
	// character outside the alphabet.
	ErrNumeral = errors.New("fpe: invalid numeral")
	// ErrKeySize means the key is not 16, 24 or 32 bytes.
	ErrKeySize = errors.New("fpe: invalid key size")
	// ErrRadix means the radix is outside [2, 65536].
	ErrRadix = errors.New("fpe: invalid radix")
	// ErrTweak means the tweak has the wrong length.
	ErrTweak = errors.New("fpe: invalid tweak length")
)

const (
	minRadix = 2
	maxRadix = 1 << 16
	// minDomain is the smallest radix^length allowed by SP 800-38G Rev. 1.
	minDomain = 1_000_000
)

// checkRadix validates the radix and returns the minimum length for which
// radix^length >= one million.
func checkRadix(radix int) (minLen int, err error) {
	if radix < minRadix || radix > maxRadix {
		return 0, fmt.Errorf("%w: %d", ErrRadix, radix)
	}
	minLen = 1
	for d := uint64(radix); d < minDomain; d *= uint64(radix) {
		minLen++
	}
	return minLen, nil
}

// checkNumerals reports ErrNumeral when a numeral is outside the radix.
func checkNumerals(x []uint16, radix int) error {
	if radix == maxRadix {
		return nil
	}
	for _, d := range x {
		if int(d) >= radix {
			return ErrNumeral
		}
	}
	return nil
}

// powUint64 returns radix^n and whether it fits in a uint64.
func powUint64(radix, n int) (uint64, bool) {
	p := uint64(1)
	for range n {
		hi, lo := bits.Mul64(p, uint64(radix))
		if hi != 0 {
			return 0, false
		}
		p = lo
	}
	return p, true
}

// numUint64 returns NUM_radix(x), the value of x read most significant
// numeral first. The caller ensures it fits.
func numUint64(x []uint16, radix uint64) uint64 {
	var v uint64
	for _, d := range x {
		v = v*radix + uint64(d)
	}
	return v
}

// numUint64Rev returns NUM_radix(REV(x)).
func numUint64Rev(x []uint16, radix uint64) uint64 {
	var v uint64
	for i := len(x) - 1; i >= 0; i-- {
		v = v*radix + uint64(x[i])
	}
	return v
}

// strUint64 writes STR^len(out)_radix(v) into out, most significant first.
func strUint64(out []uint16, v, radix uint64) {
	// Division by the constant 10 compiles to a multiplication, several
	// times faster than a 64-bit division, and digits are the usual radix.
	if radix == 10 {
		for i := len(out) - 1; i >= 0; i-- {
			out[i] = uint16(v % 10)
			v /= 10
		}
		return
	}
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = uint16(v % radix)
		v /= radix
	}
}

// strUint64Rev writes REV(STR^len(out)_radix(v)) into out.
func strUint64Rev(out []uint16, v, radix uint64) {
	if radix == 10 {
		for i := range out {
			out[i] = uint16(v % 10)
			v /= 10
		}
		return
	}
	for i := range out {
		out[i] = uint16(v % radix)
		v /= radix
	}
}

// modBytes returns NUM(s) mod m for s of at most 16 bytes.
func modBytes(s []byte, m uint64) uint64 {
	var hi, lo uint64
	for _, c := range s {
		hi = hi<<8 | lo>>56
		lo = lo<<8 | uint64(c)
	}
	// Each division costs tens of cycles, so the ones that cannot change
	// the result are skipped.
	if hi == 0 {
		return lo % m
	}
	if hi >= m {
		hi %= m
	}
	_, r := bits.Div64(hi, lo, m)
	return r
}

// reducer computes x mod m for a fixed m with a multiplication by an
// approximate reciprocal instead of a division, which costs tens of cycles.
// With inv = floor((2^64-1)/m), the estimate floor(x*inv/2^64) falls short
// of floor(x/m) by at most one, so one subtraction corrects the remainder.
type reducer struct{ m, inv uint64 }

func newReducer(m uint64) reducer { return reducer{m: m, inv: ^uint64(0) / m} }

func (r reducer) mod(x uint64) uint64 {
	q, _ := bits.Mul64(x, r.inv)
	x -= q * r.m
	if x >= r.m {
		x -= r.m
	}
	return x
}

// addMod returns (a + b) mod m for a, b < m.
func addMod(a, b, m uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 || s >= m {
		s -= m
	}
	return s
}

// subMod returns (a - b) mod m for a, b < m.
func subMod(a, b, m uint64) uint64 {
	if a >= b {
		return a - b
	}
	return a + (m - b)
}

// numBig returns NUM_radix(x) as a big integer.
func numBig(x []uint16, radix int, reverse bool) *big.Int {
	r := big.NewInt(int64(radix))
	v := new(big.Int)
	d := new(big.Int)
	for i := range x {
		j := i
		if reverse {
			j = len(x) - 1 - i
		}
		v.Mul(v, r)
		v.Add(v, d.SetInt64(int64(x[j])))
	}
	return v
}

// strBig writes STR^len(out)_radix(v) into out, reversed when reverse is set.
// v must be non-negative and below radix^len(out); v is consumed.
func strBig(out []uint16, v *big.Int, radix int, reverse bool) {
	r := big.NewInt(int64(radix))
	m := new(big.Int)
	for i := range out {
		j := len(out) - 1 - i
		if reverse {
			j = i
		}
		v.QuoRem(v, r, m)
		out[j] = uint16(m.Int64())
	}
}

// log2Ceil returns ceil(n * log2(radix)) exactly, as the bit length of
// radix^n - 1.
func log2Ceil(radix, n int) int {
	p := new(big.Int).Exp(big.NewInt(int64(radix)), big.NewInt(int64(n)), nil)
	return p.Sub(p, big.NewInt(1)).BitLen()
}

// maxLenFF31 returns 2 * floor(log_radix(2^96)), the FF3-1 maximum length.
func maxLenFF31(radix int) int {
	limit := new(big.Int).Lsh(big.NewInt(1), 96)
	p := big.NewInt(1)
	r := big.NewInt(int64(radix))
	n := 0
	for {
		p.Mul(p, r)
		if p.Cmp(limit) > 0 {
			return 2 * n
		}
		n++
	}
}

// Alphabet maps between characters and numerals: the character at index i
// is numeral i. An Alphabet is immutable and safe for concurrent use.
type Alphabet struct {
	chars []rune
	ascii [128]int32 // numeral+1 for ASCII characters, 0 when absent
	other map[rune]uint16
}

// Common alphabets.
const (
	Digits       = "0123456789"
	LowerLetters = "abcdefghijklmnopqrstuvwxyz"
	UpperLetters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

// NewAlphabet returns the alphabet of the distinct characters in chars.
func NewAlphabet(chars string) (*Alphabet, error) {
	if !utf8.ValidString(chars) {
		return nil, errors.New("fpe: alphabet is not valid UTF-8")
	}
	a := &Alphabet{chars: []rune(chars)}
	if len(a.chars) < minRadix || len(a.chars) > maxRadix {
		return nil, fmt.Errorf("%w: alphabet has %d characters, want 2 to %d", ErrRadix, len(a.chars), maxRadix)
	}
	for i, c := range a.chars {
		if _, dup := a.Index(c); dup {
			return nil, fmt.Errorf("fpe: alphabet repeats %q", c)
		}
		if c < 128 {
			a.ascii[c] = int32(i) + 1
			continue
		}
		if a.other == nil {
			a.other = make(map[rune]uint16)
		}
		a.other[c] = uint16(i)
	}
	return a, nil
}

// Radix returns the number of characters in the alphabet.
func (a *Alphabet) Radix() int { return len(a.chars) }

// Index returns the numeral of c and whether c is in the alphabet.
func (a *Alphabet) Index(c rune) (uint16, bool) {
	if c >= 0 && c < 128 {
		n := a.ascii[c]
		return uint16(n - 1), n != 0
	}
	n, ok := a.other[c]
	return n, ok
}

// Char returns the character of numeral n, which must be below Radix.
func (a *Alphabet) Char(n uint16) rune { return a.chars[n] }

// Numerals converts s to numerals. It returns ErrNumeral when s has a
// character outside the alphabet.
func (a *Alphabet) Numerals(s string) ([]uint16, error) {
	out := make([]uint16, 0, len(s))
	for _, c := range s {
		n, ok := a.Index(c)
		if !ok {
			return nil, ErrNumeral
		}
		out = append(out, n)
	}
	return out, nil
}

// String converts numerals to characters.
func (a *Alphabet) String(x []uint16) string {
	b := make([]rune, len(x))
	for i, n := range x {
		b[i] = a.chars[n]
	}
	return string(b)
}

// maxFF1Len bounds FF1 inputs. SP 800-38G allows up to 2^32 numerals; this
// package stops at 4096 so that one call cannot take unbounded time.
const maxFF1Len = 4096

// forceBig makes both modes take the big-integer path for every input, so
// that tests cover it with the published vectors. Only tests set it.
var forceBig bool

// maxTweakLen bounds FF1 tweaks, in bytes, for the same reason.
const maxTweakLen = 1024
