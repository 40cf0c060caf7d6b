package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"
)

// BenchmarkSignP256 compares ECDSA P-256 signatures made by SoftHSM2 through
// the session pool (1, 4 and 16 sessions, with as many goroutines per
// GOMAXPROCS as sessions) with crypto/ecdsa signing in process, in one run.
// Each sub-benchmark reports signatures per second.
func BenchmarkSignP256(b *testing.B) {
	digest := sha256.Sum256([]byte("benchmark"))

	b.Run("in-process", func(b *testing.B) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
	})

	for _, sessions := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("softhsm2/sessions-%d", sessions), func(b *testing.B) {
			tok := newTestToken(b, fmt.Sprintf("bench%d", sessions))
			cfg := tok.cfg
			cfg.Sessions = sessions
			h := openTestHSM(b, cfg)
			if _, err := h.InitKeys(InitOptions{}); err != nil {
				b.Fatal(err)
			}
			s, err := h.Signer(KeyRef{Label: DefaultCALabel})
			if err != nil {
				b.Fatal(err)
			}

			b.SetParallelism(sessions)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Sign(nil, digest[:], crypto.SHA256); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
		})
	}
}
