package xds

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"
	"google.golang.org/protobuf/proto"
)

// grpcPeer is one proxyless gRPC service configured only by ward.
type grpcPeer struct {
	name, id, addr string
	bootstrap      []byte
}

type mesh struct {
	ward  *Server
	addr  string
	ca    *testCA
	authz *fakeAuthz
	peers map[string]*grpcPeer
}

// startGRPCMesh starts ward and one xDS-enabled gRPC server per name, each
// with its own bootstrap, node id and SVID files. The servers expose the
// standard health service, which the tests call.
func startGRPCMesh(t *testing.T, az *fakeAuthz, names ...string) *mesh {
	t.Helper()
	m := startGRPCMeshWith(t, az, names...)
	m.authz = az
	return m
}

// startGRPCMeshWith is startGRPCMesh with any Authorizer.
func startGRPCMeshWith(t *testing.T, az Authorizer, names ...string) *mesh {
	t.Helper()
	return startGRPCMeshConfig(t, Config{Authorizer: az}, names...)
}

// startGRPCMeshConfig is startGRPCMesh with a Config whose Services and
// Issuer it fills in.
func startGRPCMeshConfig(t *testing.T, cfg Config, names ...string) *mesh {
	t.Helper()
	m := &mesh{ca: newTestCA(t), peers: map[string]*grpcPeer{}}

	listeners := map[string]net.Listener{}
	var services []Service
	for _, name := range names {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners[name] = lis
		services = append(services, Service{Name: name, SPIFFEID: testID(name), Kind: KindGRPC, Endpoints: []string{lis.Addr().String()}})
	}
	cfg.Services, cfg.Issuer = services, m.ca
	m.ward, m.addr = startServer(t, cfg)

	for _, name := range names {
		p := &grpcPeer{name: name, id: testID(name), addr: listeners[name].Addr().String()}
		certFile, keyFile, caFile := m.ca.writeSVIDFiles(t, t.TempDir(), p.id)
		bs, err := GRPCBootstrap{ServerURI: m.addr, NodeID: p.id, CertFile: certFile, KeyFile: keyFile, CAFile: caFile, Refresh: time.Second}.JSON()
		if err != nil {
			t.Fatal(err)
		}
		p.bootstrap = bs

		creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := grpcxds.NewGRPCServer(grpc.Creds(creds), grpcxds.BootstrapContentsForTesting(bs))
		if err != nil {
			t.Fatal(err)
		}
		healthpb.RegisterHealthServer(srv, health.NewServer())
		go func() { _ = srv.Serve(listeners[name]) }()
		t.Cleanup(srv.Stop)
		m.peers[name] = p
	}
	return m
}

// client returns a health client from peer from to target, resolved through
// ward with from's bootstrap.
func (m *mesh) client(t *testing.T, from, target string) healthpb.HealthClient {
	t.Helper()
	r, err := grpcxds.NewXDSResolverWithConfigForTesting(m.peers[from].bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(creds), grpc.WithResolvers(r))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return healthpb.NewHealthClient(cc)
}

func call(c healthpb.HealthClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// waitCode calls until the call returns want, or fails the test after
// limit. It returns the time taken.
func waitCode(t *testing.T, c healthpb.HealthClient, want codes.Code, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < limit {
		err = call(c)
		if status.Code(err) == want {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("Check() = %v after %v, want code %v", err, limit, want)
	return 0
}

func TestGRPCPeersConnectPolicy(t *testing.T) {
	az := newFakeAuthz([2]string{testID("a"), testID("b")}, [2]string{testID("b"), testID("c")})
	m := startGRPCMesh(t, az, "a", "b", "c")

	ab := m.client(t, "a", "b")
	waitCode(t, ab, codes.OK, 10*time.Second)

	cb := m.client(t, "c", "b")
	waitCode(t, cb, codes.PermissionDenied, 10*time.Second)

	// Grant c -> b and signal the change: no peer restarts.
	az.set(testID("c"), testID("b"), true)
	m.ward.PolicyChanged()
	waitCode(t, cb, codes.OK, 5*time.Second)
	if err := call(ab); err != nil {
		t.Errorf("a -> b after policy change: Check() = %v, want OK", err)
	}

	t.Run("quarantine", func(t *testing.T) {
		bc := m.client(t, "b", "c")
		waitCode(t, bc, codes.OK, 5*time.Second)

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		acked, err := m.ward.Quarantine(ctx, testID("b"))
		if err != nil {
			t.Fatalf("Quarantine(b) = %v", err)
		}
		t.Logf("quarantine acknowledged by every node in %v", acked)

		// Inbound to b and outbound from b both fail within one second.
		waitCode(t, ab, codes.PermissionDenied, time.Second)
		waitCode(t, bc, codes.PermissionDenied, time.Second)
		if d := time.Since(start); d > time.Second {
			t.Errorf("quarantine took %v to take effect, want under 1s", d)
		}

		if _, err := m.ward.Release(ctx, testID("b")); err != nil {
			t.Fatalf("Release(b) = %v", err)
		}
		waitCode(t, ab, codes.OK, 5*time.Second)
		waitCode(t, bc, codes.OK, 5*time.Second)
	})
}

func TestGRPCPeersPermittedScope(t *testing.T) {
	az := newFakeAuthz([2]string{testID("a"), testID("b")})
	m := startGRPCMeshConfig(t, Config{Authorizer: az, GRPCClientScope: ClientScopePermitted}, "a", "b", "c")

	waitCode(t, m.client(t, "a", "b"), codes.OK, 10*time.Second)
	// c gets no client resources for b, so the target does not resolve:
	// calls time out until gRPC's does-not-exist timer declares it missing.
	cb := m.client(t, "c", "b")
	if err := call(cb); status.Code(err) != codes.DeadlineExceeded && status.Code(err) != codes.Unavailable {
		t.Fatalf("c -> b without permission: Check() = %v, want DeadlineExceeded or Unavailable", err)
	}

	az.set(testID("c"), testID("b"), true)
	m.ward.PolicyChanged()
	waitCode(t, cb, codes.OK, 5*time.Second)
}

func TestGRPCPeerNACK(t *testing.T) {
	az := newFakeAuthz([2]string{testID("a"), testID("b")})
	m := startGRPCMesh(t, az, "a", "b", "c")
	ab := m.client(t, "a", "b")
	waitCode(t, ab, codes.OK, 10*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := m.ward.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	before := typeStatus(m.ward.Status(), testID("a"), resource.ClusterType)

	// Force a cluster gRPC rejects: grpc-go does not accept tls_params.
	m.ward.buildMu.Lock()
	m.ward.mutate = forceTLSParams(testID("a"))
	m.ward.buildMu.Unlock()
	m.ward.PolicyChanged()

	var ts TypeStatus
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(20 * time.Millisecond) {
		ts = typeStatus(m.ward.Status(), testID("a"), resource.ClusterType)
		if ts.NACK != nil {
			break
		}
	}
	if ts.NACK == nil {
		t.Fatalf("Status() CDS on a = %+v, want a NACK", ts)
	}
	if !strings.Contains(ts.NACK.Message, "tls_params") {
		t.Errorf("NACK message = %q, want gRPC's tls_params rejection", ts.NACK.Message)
	}
	if ts.Accepted != before.Accepted || ts.Served != before.Accepted {
		t.Errorf("after NACK: accepted %q served %q, want both %q", ts.Accepted, ts.Served, before.Accepted)
	}
	if ts.Desired == ts.Served {
		t.Errorf("after NACK: desired %q is served, want the rejected version held back", ts.Desired)
	}

	// The rejected version is not resent: the push count stays put while
	// the peer keeps working on its last accepted configuration.
	pushes := ts.Pushes
	for range 10 {
		if err := call(ab); err != nil {
			t.Fatalf("a -> b after NACK: Check() = %v, want OK", err)
		}
		time.Sleep(30 * time.Millisecond)
	}
	m.ward.PolicyChanged() // the same content builds the same version
	time.Sleep(100 * time.Millisecond)
	if got := typeStatus(m.ward.Status(), testID("a"), resource.ClusterType).Pushes; got != pushes {
		t.Errorf("CDS pushes to a = %d after NACK, want %d (no resend)", got, pushes)
	}
}

func forceTLSParams(node string) func(string, map[resource.Type][]types.Resource) {
	return func(id string, res map[resource.Type][]types.Resource) {
		if id != node {
			return
		}
		for i, r := range res[resource.ClusterType] {
			// Cluster resources are shared between nodes: change a copy.
			c := proto.Clone(r).(*clusterv3.Cluster)
			res[resource.ClusterType][i] = c
			ctx := &tlsv3.UpstreamTlsContext{}
			if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx); err != nil {
				panic(err)
			}
			ctx.CommonTlsContext.TlsParams = tls13()
			c.TransportSocket.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}
		}
	}
}

func typeStatus(st Status, node string, typ resource.Type) TypeStatus {
	for _, n := range st.Nodes {
		if n.Node != node {
			continue
		}
		for _, ts := range n.Types {
			if ts.Type == typ {
				return ts
			}
		}
	}
	return TypeStatus{}
}

// TestGRPCPeerServerListenerNACK forces a rejection of one node's server
// listener. The node's server and client xDS streams share the listener
// type, so the test checks that neither loses working configuration.
func TestGRPCPeerServerListenerNACK(t *testing.T) {
	az := newFakeAuthz([2]string{testID("a"), testID("b")}, [2]string{testID("b"), testID("a")})
	m := startGRPCMesh(t, az, "a", "b")
	ab, ba := m.client(t, "a", "b"), m.client(t, "b", "a")
	waitCode(t, ab, codes.OK, 10*time.Second)
	waitCode(t, ba, codes.OK, 10*time.Second)

	m.ward.buildMu.Lock()
	m.ward.mutate = func(node string, res map[resource.Type][]types.Resource) {
		if node != testID("a") {
			return
		}
		for i, r := range res[resource.ListenerType] {
			l := r.(*listenerv3.Listener)
			if len(l.GetFilterChains()) == 0 {
				continue
			}
			l = proto.Clone(l).(*listenerv3.Listener)
			ts := l.FilterChains[0].TransportSocket
			ctx := &tlsv3.DownstreamTlsContext{}
			if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
				panic(err)
			}
			ctx.CommonTlsContext.TlsParams = tls13()
			ts.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}
			res[resource.ListenerType][i] = l
		}
	}
	m.ward.buildMu.Unlock()
	m.ward.PolicyChanged()

	var ts TypeStatus
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(20 * time.Millisecond) {
		if ts = typeStatus(m.ward.Status(), testID("a"), resource.ListenerType); ts.NACK != nil {
			break
		}
	}
	if ts.NACK == nil || !strings.Contains(ts.NACK.Message, "tls_params") {
		t.Fatalf("Status() LDS on a = %+v, want a tls_params NACK", ts)
	}

	// a's client side keeps its listeners, a fresh client resolves, and a's
	// server keeps serving with its accepted listener.
	for range 5 {
		if err := call(ab); err != nil {
			t.Fatalf("a -> b after a's LDS NACK: Check() = %v, want OK", err)
		}
		if err := call(ba); err != nil {
			t.Fatalf("b -> a after a's LDS NACK: Check() = %v, want OK", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitCode(t, m.client(t, "a", "b"), codes.OK, 5*time.Second)
}
