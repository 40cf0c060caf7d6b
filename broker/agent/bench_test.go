package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/broker/agent"
	"ward.dev/ward/test/wardtest"
)

// benchSetting reads an environment variable with a default.
func benchSetting(b *testing.B, name string, def string) string {
	if v := os.Getenv(name); v != "" {
		b.Logf("%s=%s", name, v)
		return v
	}
	return def
}

// procCPU returns the user plus system CPU time of a process, from
// /proc/<pid>/stat (Linux; clock ticks assumed to be 100 per second, the
// value of USER_HZ on every mainstream Linux architecture).
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields of the whole line.
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// procMemKB returns a field of /proc/<pid>/status in KiB, such as VmRSS.
func procMemKB(b *testing.B, pid int, field string) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
			return kb
		}
	}
	return 0
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// BenchmarkAgentFleet runs many agents in this process against one
// `ward serve --dev`, each renewing a 60-second X.509-SVID, and reports
// renewal errors, the broker's CPU and memory, and the agents' heap per
// workload. The baseline is the same broker idle for as long before the
// agents start.
//
// WARD_BENCH_AGENTS (default 20) and WARD_BENCH_DURATION (default 40s) set
// the size; WARD_BENCH_AGENTS=1000 WARD_BENCH_DURATION=5m is the full run.
func BenchmarkAgentFleet(b *testing.B) {
	n, err := strconv.Atoi(benchSetting(b, "WARD_BENCH_AGENTS", "20"))
	if err != nil || n < 1 || n > 5000 {
		b.Fatalf("WARD_BENCH_AGENTS must be 1 to 5000")
	}
	duration, err := time.ParseDuration(benchSetting(b, "WARD_BENCH_DURATION", "40s"))
	if err != nil || duration <= 0 || duration > time.Hour {
		b.Fatalf("WARD_BENCH_DURATION must be a duration up to 1h")
	}

	srv := wardtest.StartDev(b)
	pid := srv.Pid()
	dir := b.TempDir()

	// Baseline: the idle broker over a short window.
	idleWindow := min(duration/4, 10*time.Second)
	idleStart := procCPU(b, pid)
	time.Sleep(idleWindow)
	idleCPU := procCPU(b, pid) - idleStart

	configs := make([]*agent.Config, n)
	for i := range n {
		id := fmt.Sprintf("spiffe://ward.test/ns/shop/sa/bench-%d", i)
		status, body := srv.Do(b, "POST", "/v1/tokens/join", map[string]string{"spiffe_id": id, "ttl": "1h"})
		if status != 200 {
			b.Fatalf("create join token: %d %s", status, body)
		}
		var tok struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal(body, &tok); err != nil {
			b.Fatal(err)
		}
		out := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(out, 0o700); err != nil {
			b.Fatal(err)
		}
		tokenFile := filepath.Join(out, "join.token")
		if err := os.WriteFile(tokenFile, []byte(tok.Token), 0o600); err != nil {
			b.Fatal(err)
		}
		yaml := fmt.Sprintf("broker: {addr: %s, ca_file: %s}\nauth: {method: join_token, join_token_file: %s}\nidentity_ttl: 1h\noutput_dir: %s\ncredentials:\n  - {name: svid, path: x509, ttl: 60s}\n",
			srv.Addr(), srv.CACertPath(), tokenFile, out)
		if configs[i], err = agent.ParseConfig("bench.yaml", []byte(yaml)); err != nil {
			b.Fatal(err)
		}
	}

	heapBefore := heapInUse()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agents := make([]*agent.Agent, n)
	done := make(chan struct{}, n)
	for i, cfg := range configs {
		if agents[i], err = agent.New(cfg, agent.Options{}); err != nil {
			b.Fatal(err)
		}
		go func(a *agent.Agent) {
			_ = a.Run(ctx)
			done <- struct{}{}
		}(agents[i])
	}

	b.ResetTimer()
	start := time.Now()
	cpuStart := procCPU(b, pid)
	deadline := start.Add(duration)
	var heapPeak uint64
	for time.Now().Before(deadline) {
		time.Sleep(min(5*time.Second, time.Until(deadline)))
		heapPeak = max(heapPeak, heapInUse())
	}
	cpu := procCPU(b, pid) - cpuStart
	elapsed := time.Since(start)
	b.StopTimer()

	var issued, failed uint64
	unready := 0
	for _, a := range agents {
		st := a.Stats()
		issued += st.Issued
		failed += st.Failed
		if a.Ready() != nil {
			unready++
		}
	}
	rss := procMemKB(b, pid, "VmRSS")
	hwm := procMemKB(b, pid, "VmHWM")
	cancel()
	for range n {
		<-done
	}

	perMinute := func(d time.Duration, over time.Duration) float64 {
		return float64(d.Milliseconds()) / over.Minutes()
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(n), "agents")
	b.ReportMetric(float64(issued), "issued")
	b.ReportMetric(float64(failed), "renewal-errors")
	b.ReportMetric(float64(unready), "unready-at-end")
	b.ReportMetric(perMinute(cpu, elapsed), "broker-cpu-ms/min")
	b.ReportMetric(perMinute(idleCPU, idleWindow), "idle-broker-cpu-ms/min")
	if issued > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(issued), "broker-cpu-us/issue")
	}
	b.ReportMetric(rss/1024, "broker-rss-MiB")
	b.ReportMetric(hwm/1024, "broker-peak-rss-MiB")
	if heapPeak > heapBefore {
		b.ReportMetric(float64(heapPeak-heapBefore)/1024/float64(n), "agent-heap-KiB/workload")
	}
}
