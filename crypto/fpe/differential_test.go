package fpe_test

import (
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"

	"ward.dev/ward/crypto/fpe"
)

// fitsUint64 reports whether radix^n fits in 64 bits, which is when the
// ciphers take the uint64 path for a larger Feistel half of n numerals.
func fitsUint64(radix, n int) bool {
	p := uint64(1)
	for range n {
		hi, lo := bits.Mul64(p, uint64(radix))
		if hi != 0 {
			return false
		}
		p = lo
	}
	return true
}

// TestFastMatchesBig encrypts random inputs on the uint64 path and again
// with big integers forced, for every radix up to 300 and every length
// whose halves fit in 64 bits. Both paths must give the same ciphertext,
// and the big-integer path must decrypt it back.
func TestFastMatchesBig(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for radix := 2; radix <= 300; radix++ {
		// The key size cycles through AES-128, -192 and -256.
		key := make([]byte, []int{16, 24, 32}[radix%3])
		for i := range key {
			key[i] = byte(rng.Uint32())
		}
		ff1, err := fpe.NewFF1(key, radix)
		if err != nil {
			t.Fatalf("NewFF1(radix %d): %v", radix, err)
		}
		ff31, err := fpe.NewFF31(key, radix)
		if err != nil {
			t.Fatalf("NewFF31(radix %d): %v", radix, err)
		}

		for n := ff1.MinLen(); fitsUint64(radix, n-n/2); n++ {
			tweak := make([]byte, rng.IntN(40))
			for i := range tweak {
				tweak[i] = byte(rng.Uint32())
			}
			compareFastBig(t, "FF1", radix, randomNumerals(rng, radix, n), tweak, ff1.Encrypt, ff1.Decrypt)
		}
		for n := ff31.MinLen(); n <= ff31.MaxLen() && fitsUint64(radix, (n+1)/2); n++ {
			tweak := make([]byte, fpe.FF31TweakLen)
			for i := range tweak {
				tweak[i] = byte(rng.Uint32())
			}
			compareFastBig(t, "FF3-1", radix, randomNumerals(rng, radix, n), tweak, ff31.Encrypt, ff31.Decrypt)
		}
	}
}

func compareFastBig(t *testing.T, mode string, radix int, x []uint16, tweak []byte, enc, dec cipherFunc) {
	t.Helper()
	fast, err := enc(x, tweak)
	if err != nil {
		t.Fatalf("%s radix %d len %d: Encrypt: %v", mode, radix, len(x), err)
	}
	restore := fpe.SetForceBig(true)
	slow, err := enc(x, tweak)
	back, decErr := dec(fast, tweak)
	restore()
	if err != nil || !slices.Equal(fast, slow) {
		t.Fatalf("%s radix %d len %d: Encrypt(%v) = %v on uint64, %v (%v) on big integers", mode, radix, len(x), x, fast, slow, err)
	}
	if decErr != nil || !slices.Equal(back, x) {
		t.Fatalf("%s radix %d len %d: big-integer Decrypt(%v) = %v (%v), want %v", mode, radix, len(x), fast, back, decErr, x)
	}
}

// TestReusedCipherMatchesFresh encrypts inputs of mixed lengths and tweak
// lengths with one FF1, whose state carries over between calls, and
// compares each ciphertext with that of a newly made FF1.
func TestReusedCipherMatchesFresh(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	key := make([]byte, 32)
	reused, err := fpe.NewFF1(key, 10)
	if err != nil {
		t.Fatal(err)
	}
	for range 2000 {
		x := randomNumerals(rng, 10, 6+rng.IntN(40))
		tweak := make([]byte, rng.IntN(3)*7)
		got, err := reused.Encrypt(x, tweak)
		if err != nil {
			t.Fatal(err)
		}
		fresh, _ := fpe.NewFF1(key, 10)
		want, err := fresh.Encrypt(x, tweak)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("Encrypt(%v, %d-byte tweak) = %v on a reused cipher, %v (%v) on a new one", x, len(tweak), got, want, err)
		}
	}
}
