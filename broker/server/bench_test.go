package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ward.dev/ward/broker/ca"
)

// apiClients is the number of concurrent API clients in the issuance benchmark.
const apiClients = 32

// BenchmarkIssueX509 measures certificate issuance over the HTTPS API with
// durable leases and audit lines, next to the in-process limit measured in
// the same run: CSR check plus x509.CreateCertificate with the same key
// type and no I/O, on all cores. It reports both rates, their ratio and the
// API's p50 and p99 latency.
func BenchmarkIssueX509(b *testing.B) {
	ts := startServer(b, nil)
	csr := newCSR(b, "")
	body, _ := json.Marshal(map[string]any{"csr": csr, "spiffe_id": "spiffe://ward.test/ns/shop/sa/web", "ttl": "1h"})

	inProcess := inProcessRate(b, ts.srv.ca, []byte(csr))

	b.ResetTimer()
	rate, p50, p99 := driveAPI(b, ts, body, b.N)
	b.StopTimer()

	b.ReportMetric(rate, "certs/s")
	b.ReportMetric(inProcess, "inproc-certs/s")
	b.ReportMetric(rate/inProcess, "ratio")
	b.ReportMetric(p50.Seconds()*1000, "p50-ms")
	b.ReportMetric(p99.Seconds()*1000, "p99-ms")
}

// BenchmarkIssueX509HSM measures API issuance with the CA key and the KEK on
// a SoftHSM2 token, next to the local CA measured in the same run over a
// fixed 2,000 issuances.
func BenchmarkIssueX509HSM(b *testing.B) {
	body, _ := json.Marshal(map[string]any{"csr": newCSR(b, ""), "spiffe_id": "spiffe://ward.test/ns/shop/sa/web", "ttl": "1h"})
	local := startServer(b, nil)
	localRate, _, _ := driveAPI(b, local, body, 2000)

	edit, _ := hsmConfig(b)
	ts := startServer(b, edit)
	b.ResetTimer()
	rate, _, p99 := driveAPI(b, ts, body, b.N)
	b.StopTimer()

	b.ReportMetric(rate, "hsm-certs/s")
	b.ReportMetric(localRate, "local-certs/s")
	b.ReportMetric(rate/localRate, "ratio")
	b.ReportMetric(p99.Seconds()*1000, "p99-ms")
}

// driveAPI sends n issuance requests from apiClients goroutines and returns
// the rate and the p50 and p99 latency.
func driveAPI(b *testing.B, ts *testServer, body []byte, n int) (rate float64, p50, p99 time.Duration) {
	var (
		next      atomic.Int64
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, n)
		wg        sync.WaitGroup
		failed    atomic.Int64
	)
	start := time.Now()
	for range apiClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, n/apiClients+1)
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				req, _ := http.NewRequest("POST", ts.addr+"/v1/issue/x509", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+ts.token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := ts.http.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d issuances failed", f, n)
	}
	slices.Sort(latencies)
	return float64(n) / elapsed.Seconds(), percentile(latencies, 0.50), percentile(latencies, 0.99)
}

// inProcessRate returns certificates per second for CSR parsing and signing
// alone, on every core, over a fixed count.
func inProcessRate(b *testing.B, authority *ca.CA, csrPEM []byte) float64 {
	const total = 4000
	workers := runtime.GOMAXPROCS(0)
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= total {
				csr, err := ca.ParseCSR(csrPEM)
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := authority.Sign(ca.Request{PublicKey: csr.PublicKey, SPIFFEID: mustSPIFFE("spiffe://ward.test/ns/shop/sa/web"), TTL: time.Hour}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return total / time.Since(start).Seconds()
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(float64(len(sorted)-1)*p)]
}
