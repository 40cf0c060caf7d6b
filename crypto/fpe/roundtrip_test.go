package fpe_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"ward.dev/ward/crypto/fpe"
)

// radixes covers every radix up to 300 and a spread of larger ones up to
// the maximum, 65536.
func radixes() []int {
	var rs []int
	for r := 2; r <= 300; r++ {
		rs = append(rs, r)
	}
	return append(rs, 1000, 1024, 4096, 10007, 32768, 65535, 65536)
}

func randomNumerals(rng *rand.Rand, radix, n int) []uint16 {
	x := make([]uint16, n)
	for i := range x {
		x[i] = uint16(rng.IntN(radix))
	}
	return x
}

// TestRoundTrip checks Decrypt(Encrypt(x)) = x and that the ciphertext
// stays in the radix, for every radix above and every length from the
// minimum to a bound (FF1) or to the maximum (FF3-1).
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	key := make([]byte, 16)
	for i := range key {
		key[i] = byte(i)
	}
	tweak := []byte{1, 2, 3, 4, 5, 6, 7}

	for _, radix := range radixes() {
		ff1, err := fpe.NewFF1(key, radix)
		if err != nil {
			t.Fatalf("NewFF1(radix %d): %v", radix, err)
		}
		ff31, err := fpe.NewFF31(key, radix)
		if err != nil {
			t.Fatalf("NewFF31(radix %d): %v", radix, err)
		}
		for n := ff1.MinLen(); n <= ff1.MinLen()+24; n++ {
			checkRoundTrip(t, "FF1", radix, randomNumerals(rng, radix, n), tweak, ff1.Encrypt, ff1.Decrypt)
		}
		for n := ff31.MinLen(); n <= ff31.MaxLen(); n++ {
			checkRoundTrip(t, "FF3-1", radix, randomNumerals(rng, radix, n), tweak, ff31.Encrypt, ff31.Decrypt)
		}
	}
}

func checkRoundTrip(t *testing.T, mode string, radix int, x []uint16, tweak []byte, enc, dec cipherFunc) {
	t.Helper()
	ct, err := enc(x, tweak)
	if err != nil {
		t.Fatalf("%s radix %d len %d: Encrypt: %v", mode, radix, len(x), err)
	}
	if len(ct) != len(x) {
		t.Fatalf("%s radix %d: len(Encrypt(x)) = %d, want %d", mode, radix, len(ct), len(x))
	}
	for _, d := range ct {
		if int(d) >= radix {
			t.Fatalf("%s radix %d: Encrypt produced numeral %d", mode, radix, d)
		}
	}
	pt, err := dec(ct, tweak)
	if err != nil || !slices.Equal(pt, x) {
		t.Fatalf("%s radix %d len %d: Decrypt(Encrypt(x)) = %v, %v, want %v", mode, radix, len(x), pt, err, x)
	}
}

func TestSmallDomainRejected(t *testing.T) {
	key := make([]byte, 32)
	tests := []struct {
		name  string
		radix int
		n     int
	}{
		{"digits5", 10, 5},
		{"letters4", 26, 4},
		{"binary19", 2, 19},
		{"radix1000_1", 1000, 1},
		{"radix65536_1", 65536, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ff1, _ := fpe.NewFF1(key, tc.radix)
			if _, err := ff1.Encrypt(make([]uint16, tc.n), nil); !errors.Is(err, fpe.ErrDomainTooSmall) {
				t.Errorf("FF1.Encrypt(radix %d, len %d) error = %v, want ErrDomainTooSmall", tc.radix, tc.n, err)
			}
			ff31, _ := fpe.NewFF31(key, tc.radix)
			if _, err := ff31.Encrypt(make([]uint16, tc.n), make([]byte, 7)); !errors.Is(err, fpe.ErrDomainTooSmall) {
				t.Errorf("FF31.Encrypt(radix %d, len %d) error = %v, want ErrDomainTooSmall", tc.radix, tc.n, err)
			}
		})
	}
}

func TestInvalidInputs(t *testing.T) {
	key := make([]byte, 16)
	ff1, _ := fpe.NewFF1(key, 10)
	ff31, _ := fpe.NewFF31(key, 10)
	tests := []struct {
		name string
		err  error
		run  func() error
	}{
		{"ff1 key 15 bytes", fpe.ErrKeySize, func() error { _, err := fpe.NewFF1(make([]byte, 15), 10); return err }},
		{"ff31 key 0 bytes", fpe.ErrKeySize, func() error { _, err := fpe.NewFF31(nil, 10); return err }},
		{"radix 1", fpe.ErrRadix, func() error { _, err := fpe.NewFF1(key, 1); return err }},
		{"radix 65537", fpe.ErrRadix, func() error { _, err := fpe.NewFF31(key, 65537); return err }},
		{"ff1 numeral 10", fpe.ErrNumeral, func() error { _, err := ff1.Encrypt([]uint16{1, 2, 3, 4, 5, 10}, nil); return err }},
		{"ff1 too long", fpe.ErrLength, func() error { _, err := ff1.Encrypt(make([]uint16, 4097), nil); return err }},
		{"ff1 tweak too long", fpe.ErrTweak, func() error { _, err := ff1.Encrypt(make([]uint16, 6), make([]byte, 1025)); return err }},
		{"ff31 tweak 8 bytes", fpe.ErrTweak, func() error { _, err := ff31.Encrypt(make([]uint16, 6), make([]byte, 8)); return err }},
		{"ff31 too long", fpe.ErrLength, func() error { _, err := ff31.Encrypt(make([]uint16, ff31.MaxLen()+1), make([]byte, 7)); return err }},
		{"alphabet repeat", nil, func() error { _, err := fpe.NewAlphabet("0120"); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil {
				t.Fatalf("error = nil, want %v", tc.err)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Errorf("error = %v, want %v", err, tc.err)
			}
		})
	}
}

// TestRoundTripEveryRadix checks one random input of a random length near
// the minimum for every radix from 2 to 65536, in both modes.
func TestRoundTripEveryRadix(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	key := make([]byte, 32)
	tweak := []byte{9, 8, 7, 6, 5, 4, 3}
	for radix := 2; radix <= 65536; radix++ {
		ff1, err := fpe.NewFF1(key, radix)
		if err != nil {
			t.Fatalf("NewFF1(radix %d): %v", radix, err)
		}
		ff31, err := fpe.NewFF31(key, radix)
		if err != nil {
			t.Fatalf("NewFF31(radix %d): %v", radix, err)
		}
		checkRoundTrip(t, "FF1", radix, randomNumerals(rng, radix, ff1.MinLen()+rng.IntN(4)), tweak, ff1.Encrypt, ff1.Decrypt)
		n := min(ff31.MinLen()+rng.IntN(4), ff31.MaxLen())
		checkRoundTrip(t, "FF3-1", radix, randomNumerals(rng, radix, n), tweak, ff31.Encrypt, ff31.Decrypt)
	}
}
