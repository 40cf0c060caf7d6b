package xds

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

// TestNACKNotResent sends NACKs from a raw ADS client and checks that the
// server sends nothing more until the configuration changes.
func TestNACKNotResent(t *testing.T) {
	tests := []struct {
		name string
		held string // version_info of the NACK: what the node still holds
	}{
		{name: "first push rejected", held: ""},
		{name: "version from an earlier server", held: "0123456789abcdef"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := newTestCA(t)
			s, addr := startServer(t, Config{Services: threeServices(), Authorizer: newFakeAuthz(), Issuer: ca})
			cert := ca.tlsCert(t, testID("a"))
			cc := dialADS(t, addr, &cert, ca.TrustBundlePEM())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			responses := make(chan *discoveryv3.DiscoveryResponse, 16)
			go func() {
				for {
					resp, err := stream.Recv()
					if err != nil {
						close(responses)
						return
					}
					responses <- resp
				}
			}()

			node := &corev3.Node{Id: testID("a")}
			if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType, VersionInfo: tt.held}); err != nil {
				t.Fatal(err)
			}
			first := <-responses
			if first == nil {
				t.Fatal("stream closed before the first response")
			}
			nack := &discoveryv3.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: tt.held, ResponseNonce: first.GetNonce(),
				ErrorDetail: &rpcstatus.Status{Code: 3, Message: "cluster rejected for the test"}}
			if err := stream.Send(nack); err != nil {
				t.Fatal(err)
			}

			select {
			case resp := <-responses:
				t.Fatalf("after NACK the server sent version %q, want nothing", resp.GetVersionInfo())
			case <-time.After(300 * time.Millisecond):
			}
			ts := typeStatus(s.Status(), testID("a"), resource.ClusterType)
			if ts.NACK == nil || ts.NACK.Version != first.GetVersionInfo() {
				t.Errorf("Status() NACK = %+v, want version %q", ts.NACK, first.GetVersionInfo())
			}
			if ts.Served != tt.held {
				t.Errorf("Status() served = %q after NACK, want the held %q", ts.Served, tt.held)
			}

			// New content is pushed: a new service adds a cluster.
			services := append(threeServices(), Service{Name: "d", SPIFFEID: testID("d"), Kind: KindGRPC, Endpoints: []string{"127.0.0.1:7004"}})
			if err := s.SetServices(ctx, services); err != nil {
				t.Fatal(err)
			}
			select {
			case resp := <-responses:
				if resp.GetVersionInfo() == first.GetVersionInfo() {
					t.Errorf("after a change the server resent the rejected version %q", resp.GetVersionInfo())
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no push after the configuration changed")
			}
		})
	}
}

// TestDeltaNACKNotResent checks that go-control-plane's delta server, which
// records resource versions when it sends them, does not resend a resource
// a node rejected.
func TestDeltaNACKNotResent(t *testing.T) {
	ca := newTestCA(t)
	s, addr := startServer(t, Config{Services: threeServices(), Authorizer: newFakeAuthz([2]string{testID("c"), testID("a")}), Issuer: ca})
	cert := ca.tlsCert(t, testID("c"))
	cc := dialADS(t, addr, &cert, ca.TrustBundlePEM())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	responses := make(chan *discoveryv3.DeltaDiscoveryResponse, 16)
	go func() {
		defer close(responses)
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			responses <- resp
		}
	}()

	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: testID("c")}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	first := <-responses
	if first == nil || len(first.GetResources()) == 0 {
		t.Fatalf("first delta response = %v, want clusters", first)
	}
	nack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: first.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "cluster rejected for the test"}}
	if err := stream.Send(nack); err != nil {
		t.Fatal(err)
	}
	// Once the NACK is recorded, a rebuild with unchanged content must not
	// send anything either, in particular not a removal of the rejected
	// clusters.
	for typeStatus(s.Status(), testID("c"), resource.ClusterType).NACK == nil {
		if ctx.Err() != nil {
			t.Fatal("delta NACK not recorded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-responses:
		t.Fatalf("after a delta NACK the server sent %d resources and removed %v, want nothing", len(resp.GetResources()), resp.GetRemovedResources())
	case <-time.After(300 * time.Millisecond):
	}
}

// TestHeldTypeReplacedByAcceptedContent rejects a change and then reverts
// it: the cache must end up with the accepted content again, although its
// version equals the version string the held content was offered under.
func TestHeldTypeReplacedByAcceptedContent(t *testing.T) {
	s, err := New(Config{TrustDomain: testTD, Services: threeServices(), Authorizer: newFakeAuthz(), Issuer: newTestCA(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	node := testID("a")
	s.mu.Lock()
	accepted := s.nodes[node].served[resource.ClusterType]
	for _, typ := range resourceTypes {
		s.recordACK(node, typ, s.nodes[node].served[typ].version)
	}
	s.mu.Unlock()

	// The node rejects new content.
	if err := s.SetServices(ctx, append(threeServices(), Service{Name: "d", SPIFFEID: testID("d"), Kind: KindGRPC, Endpoints: []string{"127.0.0.1:7004"}})); err != nil {
		t.Fatal(err)
	}
	// The node rejects every type, so every type is held.
	s.mu.Lock()
	st := s.nodes[node]
	rejected := st.desired[resource.ClusterType]
	for _, typ := range resourceTypes {
		s.recordNACK(node, typ, st.desired[typ].version, st.accepted[typ], "rejected for the test")
	}
	held := st.served[resource.ClusterType]
	s.mu.Unlock()
	if !held.held || held.version != accepted.version || len(held.items) != len(rejected.items) {
		t.Fatalf("after NACK served = version %q held %v with %d items, want the rejected %d items held under %q", held.version, held.held, len(held.items), len(rejected.items), accepted.version)
	}

	// Reverting the change restores the accepted content in the cache.
	if err := s.SetServices(ctx, threeServices()); err != nil {
		t.Fatal(err)
	}
	snap, err := s.cache.GetSnapshot(node)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(snap.GetResources(resource.ClusterType)); got != len(accepted.items) {
		t.Errorf("cache clusters after revert = %d, want the accepted %d", got, len(accepted.items))
	}
}
