package fpe

import (
	"math/rand/v2"
	"testing"
)

// TestReducer compares reducer.mod with the % operator on the edges of the
// range and on random moduli of every bit length.
func TestReducer(t *testing.T) {
	const top = ^uint64(0)
	xs := []uint64{0, 1, 2, top, top - 1, 1 << 63, 1<<63 - 1}
	ms := []uint64{1, 2, 3, 10, 1000000, 1 << 32, 1<<32 + 1, 1 << 63, top - 1, top}
	rng := rand.New(rand.NewPCG(1, 2))
	for bitLen := 1; bitLen <= 64; bitLen++ {
		ms = append(ms, rng.Uint64()>>(64-bitLen)|1<<(bitLen-1))
	}
	for _, m := range ms {
		r := newReducer(m)
		for _, x := range xs {
			if got, want := r.mod(x), x%m; got != want {
				t.Fatalf("%d mod %d = %d, want %d", x, m, got, want)
			}
		}
		for range 2000 {
			x := rng.Uint64()
			if got, want := r.mod(x), x%m; got != want {
				t.Fatalf("%d mod %d = %d, want %d", x, m, got, want)
			}
		}
	}
}
