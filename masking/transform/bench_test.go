package transform_test

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"testing"
)

// BenchmarkTransformers measures values per second for each transformer on
// every core (RunParallel) and, as the baseline in the same run, AES-256-GCM
// sealing of the same values.
func BenchmarkTransformers(b *testing.B) {
	keys := testKeys(b, 9)
	values := make([]string, 1024)
	for i := range values {
		values[i] = fmt.Sprintf("4111 1111 %04d %04d", i, 7*i%10000)
	}

	cases := []struct {
		name, spec string
		params     map[string]string
	}{
		{"tokenize", "tokenize", nil},
		{"fpe-ff1", "fpe", map[string]string{"keep_first": "6", "luhn": "true"}},
		{"fpe-ff3-1", "fpe", map[string]string{"mode": "ff3-1"}},
		{"hash", "hash", nil},
		{"email", "email", nil},
		{"fake-name", "fake", map[string]string{"kind": "name"}},
		{"partial", "partial", nil},
		{"date-shift", "date-shift", nil},
	}
	for _, c := range cases {
		tr := mustNew(b, keys, c.spec, c.params)
		in := values
		switch c.spec {
		case "date-shift":
			in = []string{"2009-01-01 00:00:00", "2013-12-22 00:00:00"}
		case "email":
			in = []string{"luisg@embraer.com.br", "leonekohler@surfeu.de", "ftremblay@gmail.com"}
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := tr.Transform(in[i%len(in)], ""); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "values/s")
		})
	}

	b.Run("aes-gcm-seal-baseline", func(b *testing.B) {
		block, _ := aes.NewCipher(make([]byte, 32))
		aead, _ := cipher.NewGCM(block)
		b.RunParallel(func(pb *testing.PB) {
			nonce := make([]byte, aead.NonceSize())
			dst := make([]byte, 0, 128)
			i := 0
			for pb.Next() {
				nonce[0]++
				dst = aead.Seal(dst[:0], nonce, []byte(values[i%len(values)]), nil)
				i++
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "values/s")
	})
}
