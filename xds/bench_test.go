package xds

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// benchServices returns n services of kind on distinct loopback ports, and
// a ring graph in which service i may connect to service i+1 and i+2.
func benchServices(n int, kind Kind) ([]Service, map[string]*Service, graph) {
	services := make([]Service, n)
	for i := range services {
		name := fmt.Sprintf("svc-%05d", i)
		services[i] = Service{Name: name, SPIFFEID: testID(name), Kind: kind, Endpoints: []string{fmt.Sprintf("127.0.%d.%d:%d", i/250, i%250+1, 9000+i%1000)}, AppPort: 8080}
	}
	byID := make(map[string]*Service, n)
	for i := range services {
		byID[services[i].SPIFFEID] = &services[i]
	}
	g := graph{callers: map[string][]string{}, upstreams: map[string][]string{}}
	for i := range services {
		for _, j := range []int{(i + 1) % n, (i + 2) % n} {
			caller, target := services[i].SPIFFEID, services[j].SPIFFEID
			g.callers[target] = append(g.callers[target], caller)
			g.upstreams[caller] = append(g.upstreams[caller], target)
		}
	}
	for _, ids := range g.callers {
		slices.Sort(ids)
	}
	for _, ids := range g.upstreams {
		slices.Sort(ids)
	}
	return services, byID, g
}

// BenchmarkSnapshotBuild renders and validates every node's snapshot from a
// decided connect graph with two upstreams per service. ns/service staying
// flat across sizes shows linear growth; grpc-all, which sends every node
// every service, is the quadratic baseline.
func BenchmarkSnapshotBuild(b *testing.B) {
	cases := []struct {
		kind  Kind
		scope ClientScope
		label string
		sizes []int
	}{
		{KindEnvoy, ClientScopeAll, "envoy", []int{1000, 5000, 10000}},
		{KindGRPC, ClientScopePermitted, "grpc-permitted", []int{1000, 5000, 10000}},
		{KindGRPC, ClientScopeAll, "grpc-all", []int{250, 500, 1000}},
	}
	for _, tc := range cases {
		for _, n := range tc.sizes {
			b.Run(fmt.Sprintf("%s/services=%d", tc.label, n), func(b *testing.B) {
				services, byID, g := benchServices(n, tc.kind)
				s, err := New(Config{TrustDomain: testTD, Domain: "bench", Services: services, Authorizer: newFakeAuthz(), Issuer: fixedIssuer{}, GRPCClientScope: tc.scope})
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := s.renderGraph(ctx, services, byID, g, nil); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/service")
			})
		}
	}
}

// simMesh is a ward server with n simulated proxyless gRPC nodes on
// loopback. Each node has its own certificate, TLS connection and ADS
// stream, subscribes to its server listener and acknowledges every
// response.
type simMesh struct {
	s        *Server
	az       *fakeAuthz
	services []Service
}

const monitorName = "monitor"

func startSimMesh(b *testing.B, n int) *simMesh {
	b.Helper()
	ca := newTestCA(b)
	services, _, g := benchServices(n, KindGRPC)
	services = append(services, Service{Name: monitorName, SPIFFEID: testID(monitorName), Kind: KindGRPC, Endpoints: []string{"127.0.0.1:8999"}})
	az := newFakeAuthz()
	for target, callers := range g.callers {
		for _, caller := range callers {
			az.set(caller, target, true)
		}
	}
	s, addr := startServer(b, Config{Services: services, Authorizer: az, Issuer: ca, GRPCClientScope: ClientScopePermitted, Logger: slog.New(slog.DiscardHandler)})

	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	for _, svc := range services[:n] {
		cert := ca.tlsCert(b, svc.SPIFFEID)
		cc := dialADS(b, addr, &cert, ca.TrustBundlePEM())
		stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
		if err != nil {
			b.Fatal(err)
		}
		go ackLoop(stream, svc.SPIFFEID, fmt.Sprintf(GRPCServerListenerTemplate, svc.Endpoints[0]))
	}

	// Wait until every node has its stream open and acknowledged.
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		st := s.Status()
		connected := 0
		for _, ns := range st.Nodes {
			if ns.Streams > 0 && typeStatusOf(ns, resource.ListenerType).Accepted != "" {
				connected++
			}
		}
		if connected == n {
			break
		}
		if time.Since(start) > time.Minute {
			b.Fatalf("%d of %d nodes connected after a minute", connected, n)
		}
	}
	return &simMesh{s: s, az: az, services: services}
}

func typeStatusOf(ns NodeStatus, typ resource.Type) TypeStatus {
	for _, ts := range ns.Types {
		if ts.Type == typ {
			return ts
		}
	}
	return TypeStatus{}
}

func ackLoop(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, node, listener string) {
	req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: resource.ListenerType, ResourceNames: []string{listener}}
	if err := stream.Send(req); err != nil {
		return
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return
		}
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: resource.ListenerType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(), ResourceNames: []string{listener}}
		if err := stream.Send(ack); err != nil {
			return
		}
	}
}

// toggleMonitor grants or revokes the monitor's connect permission to every
// service, which changes every node's server listener.
func (m *simMesh) toggleMonitor(on bool) {
	for _, svc := range m.services {
		if svc.Name != monitorName {
			m.az.set(testID(monitorName), svc.SPIFFEID, on)
		}
	}
}

func reportPercentiles(b *testing.B, samples []time.Duration) {
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	at := func(q float64) float64 {
		return float64(samples[int(q*float64(len(samples)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.5), "p50-ms")
	b.ReportMetric(at(0.9), "p90-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkPolicyChangeToLastACK measures a policy change that alters
// every node's listener, from the rebuild (debounce excluded) to the last
// node's ACK. clients=10 is the baseline.
func BenchmarkPolicyChangeToLastACK(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			m := startSimMesh(b, n)
			ctx := context.Background()
			var samples []time.Duration
			on := false
			for b.Loop() {
				on = !on
				m.toggleMonitor(on)
				start := time.Now()
				if err := m.s.Rebuild(ctx); err != nil {
					b.Fatal(err)
				}
				wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				if _, err := m.s.WaitConverged(wctx); err != nil {
					b.Fatal(err)
				}
				cancel()
				samples = append(samples, time.Since(start))
			}
			reportPercentiles(b, samples)
		})
	}
}

// BenchmarkQuarantineToLastACK measures Quarantine and Release of one
// service, each from the call to the last affected node's ACK.
func BenchmarkQuarantineToLastACK(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			m := startSimMesh(b, n)
			m.toggleMonitor(true)
			ctx := context.Background()
			if err := m.s.Rebuild(ctx); err != nil {
				b.Fatal(err)
			}
			target := m.services[0].SPIFFEID
			var samples []time.Duration
			on := false
			for b.Loop() {
				on = !on
				wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				var d time.Duration
				var err error
				if on {
					d, err = m.s.Quarantine(wctx, target)
				} else {
					d, err = m.s.Release(wctx, target)
				}
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				samples = append(samples, d)
			}
			reportPercentiles(b, samples)
		})
	}
}

// BenchmarkMemoryPerNode reports the live heap per node: of the built
// snapshots alone, and of connected nodes with their ADS streams. The
// simulated clients run in the same process, so the second figure includes
// their connections too and is an upper bound for the server side.
func BenchmarkMemoryPerNode(b *testing.B) {
	const n = 1000
	// The measurement runs once per call whatever b.N is: repeating it
	// would only stack up more connections.
	base := liveHeap()
	m := startSimMesh(b, n)
	connected := liveHeap()

	services := m.services
	byID := map[string]*Service{}
	for i := range services {
		byID[services[i].SPIFFEID] = &services[i]
	}
	_, _, g := benchServices(n, KindGRPC)
	before := liveHeap()
	sets, err := m.s.renderGraph(context.Background(), services, byID, g, nil)
	if err != nil {
		b.Fatal(err)
	}
	after := liveHeap()
	runtime.KeepAlive(sets)

	for range b.N {
	}
	b.ReportMetric(float64(connected-base)/n, "B/node-connected")
	b.ReportMetric(float64(after-before)/n, "B/node-snapshot")
	b.ReportMetric(0, "ns/op")
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkDecide measures the connect decisions of one build with ward's
// Casbin enforcer, against a policy of two connect lines per service: every
// ordered pair (casbin), or only the pairs the listed rules can match
// (casbin-rules). The fake table authorizer is the baseline.
func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{100, 300, 1000} {
		services, _, g := benchServices(n, KindGRPC)
		var lines strings.Builder
		for target, callers := range g.callers {
			for _, caller := range callers {
				fmt.Fprintf(&lines, "p, %s, bench, service/%s, connect, allow\n", caller, target)
			}
		}
		enf := newBenchEnforcer(b, lines.String())
		real := AuthorizerFunc(func(sub, dom, obj, act string) bool { return enf.Decide(sub, dom, obj, act).Allowed })
		fake := newFakeAuthz()
		for target, callers := range g.callers {
			for _, caller := range callers {
				fake.set(caller, target, true)
			}
		}
		var rules []ConnectRule
		for target, callers := range g.callers {
			for _, caller := range callers {
				rules = append(rules, ConnectRule{Subject: caller, Object: ObjectPrefix + target})
			}
		}
		for _, tc := range []struct {
			name  string
			az    Authorizer
			rules bool
		}{{"table", fake, false}, {"casbin", real, false}, {"casbin-rules", real, true}} {
			b.Run(fmt.Sprintf("%s/services=%d", tc.name, n), func(b *testing.B) {
				for b.Loop() {
					decide(services, tc.az, "bench", nil, rules, tc.rules)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/service")
			})
		}
	}
}
