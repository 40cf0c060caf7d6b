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

	var (
		next      atomic.Int64
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
		wg        sync.WaitGroup
		failed    atomic.Int64
	)
	b.ResetTimer()
	start := time.Now()
	for range apiClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, b.N/apiClients+1)
			for next.Add(1) <= int64(b.N) {
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
	b.StopTimer()

	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d issuances failed", n, b.N)
	}
	slices.Sort(latencies)
	rate := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(rate, "certs/s")
	b.ReportMetric(inProcess, "inproc-certs/s")
	b.ReportMetric(rate/inProcess, "ratio")
	b.ReportMetric(percentile(latencies, 0.50).Seconds()*1000, "p50-ms")
	b.ReportMetric(percentile(latencies, 0.99).Seconds()*1000, "p99-ms")
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
