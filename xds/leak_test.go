package xds

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// TestADSStreamCyclesNoLeak opens and closes 10,000 ADS streams, each
// receiving one response, and checks that goroutines, heap and the server's
// stream table return to where they were.
func TestADSStreamCyclesNoLeak(t *testing.T) {
	cycles := 10_000
	if testing.Short() {
		cycles = 1_000
	}
	ca := newTestCA(t)
	s, addr := startServer(t, Config{Services: threeServices(), Authorizer: newFakeAuthz(), Issuer: ca})
	cert := ca.tlsCert(t, testID("a"))
	cc := dialADS(t, addr, &cert, ca.TrustBundlePEM())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cycle := func(n int) {
		for i := range n {
			if _, err := fetch(ctx, cc, testID("a"), resource.ListenerType); err != nil {
				t.Fatalf("cycle %d: fetch() = %v", i, err)
			}
		}
	}

	cycle(200) // warm up connection pools and caches
	goroutines0, heap0 := settle(t, s)
	cycle(cycles)
	goroutines1, heap1 := settle(t, s)

	t.Logf("%d cycles: goroutines %d -> %d, heap %d KiB -> %d KiB", cycles, goroutines0, goroutines1, heap0>>10, heap1>>10)
	if goroutines1 > goroutines0+5 {
		t.Errorf("goroutines = %d after %d cycles, want at most %d", goroutines1, cycles, goroutines0+5)
	}
	if heap1 > heap0+2<<20 {
		t.Errorf("heap = %d KiB after %d cycles, want at most %d KiB", heap1>>10, cycles, (heap0+2<<20)>>10)
	}
}

// settle waits until the server has no open stream, then returns the
// goroutine count and live heap after a collection.
func settle(t *testing.T, s *Server) (int, uint64) {
	t.Helper()
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		open := len(s.streams)
		s.mu.Unlock()
		if open == 0 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%d streams still open", open)
		}
	}
	// Stream goroutines exit shortly after the server removes the stream.
	var goroutines int
	for range 50 {
		runtime.GC()
		goroutines = runtime.NumGoroutine()
		time.Sleep(10 * time.Millisecond)
		if runtime.NumGoroutine() == goroutines {
			break
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return goroutines, ms.HeapAlloc
}
