package authz_test

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ward.dev/ward/authz"
)

// latencies records the duration of each call and reports its p50 and p99.
type latencies struct{ samples []time.Duration }

func (l *latencies) time(f func()) {
	start := time.Now()
	f()
	if len(l.samples) < 1<<20 {
		l.samples = append(l.samples, time.Since(start))
	}
}

func (l *latencies) report(b *testing.B) {
	if len(l.samples) == 0 {
		return
	}
	slices.Sort(l.samples)
	at := func(q float64) float64 {
		return float64(l.samples[int(q*float64(len(l.samples)-1))].Nanoseconds())
	}
	b.ReportMetric(at(0.50), "p50-ns")
	b.ReportMetric(at(0.99), "p99-ns")
}

// BenchmarkDecide measures one decision over a random 10,000-line policy:
// ward without its decision cache (cold), ward with a warm cache, and plain
// Casbin Enforce over the same files as the baseline. Cold decisions still
// reuse role lookups memoized for the policy version, as Casbin's Enforce
// does for its own. Each call is timed on its own, so the p50 and p99
// include two clock reads (tens of nanoseconds).
func BenchmarkDecide(b *testing.B) {
	gen := newRandomPolicy(1, 10000)
	modelPath, policyPath := writeFiles(b, gen.text)
	requests := make([][4]string, 4096)
	for i := range requests {
		requests[i] = gen.request()
	}

	b.Run("lines=10000/ward-cold", func(b *testing.B) {
		e, err := authz.New(modelPath, policyPath, authz.WithCacheSize(0))
		if err != nil {
			b.Fatal(err)
		}
		var l latencies
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			r := requests[i%len(requests)]
			l.time(func() { e.Decide(r[0], r[1], r[2], r[3]) })
		}
		l.report(b)
	})

	b.Run("lines=10000/ward-warm", func(b *testing.B) {
		e, err := authz.New(modelPath, policyPath)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range requests {
			e.Decide(r[0], r[1], r[2], r[3])
		}
		var l latencies
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			r := requests[i%len(requests)]
			l.time(func() { e.Decide(r[0], r[1], r[2], r[3]) })
		}
		l.report(b)
	})

	// Several goroutines share one snapshot and Casbin's role manager, whose
	// lookups take a mutex.
	b.Run("lines=10000/ward-cold-parallel", func(b *testing.B) {
		e, err := authz.New(modelPath, policyPath, authz.WithCacheSize(0))
		if err != nil {
			b.Fatal(err)
		}
		var mu sync.Mutex
		var all latencies
		var next atomic.Uint64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var l latencies
			for pb.Next() {
				r := requests[next.Add(1)%uint64(len(requests))]
				l.time(func() { e.Decide(r[0], r[1], r[2], r[3]) })
			}
			mu.Lock()
			all.samples = append(all.samples, l.samples...)
			mu.Unlock()
		})
		all.report(b)
	})

	b.Run("lines=10000/casbin-plain", func(b *testing.B) {
		ref := newPlainCasbin(b, modelPath, policyPath)
		var l latencies
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			r := requests[i%len(requests)]
			l.time(func() {
				if _, err := ref.Enforce(r[0], r[1], r[2], r[3]); err != nil {
					b.Fatal(err)
				}
			})
		}
		l.report(b)
	})
}
