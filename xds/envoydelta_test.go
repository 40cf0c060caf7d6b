package xds

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// TestEnvoyDeltaQuarantine follows an Envoy node's inbound listener over a
// delta ADS stream while a caller is quarantined and released.
func TestEnvoyDeltaQuarantine(t *testing.T) {
	ca := newTestCA(t)
	s, addr := startServer(t, Config{Services: threeServices(), Authorizer: newFakeAuthz([2]string{testID("a"), testID("c")}), Issuer: ca})
	cert := ca.tlsCert(t, testID("c"))
	cc := dialADS(t, addr, &cert, ca.TrustBundlePEM())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: testID("c")}, TypeUrl: resource.ListenerType}); err != nil {
		t.Fatal(err)
	}

	// next receives the next listener update, ACKs it and returns the
	// principals the inbound listener admits.
	next := func() []string {
		t.Helper()
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv() = %v", err)
		}
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType, ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetResources() {
			if r.GetName() != listenerInbound {
				continue
			}
			l := &listenerv3.Listener{}
			if err := r.GetResource().UnmarshalTo(l); err != nil {
				t.Fatal(err)
			}
			rbac := &netrbacv3.RBAC{}
			if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(rbac); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, p := range rbac.GetRules().GetPolicies()[rbacPolicyConnect].GetPrincipals() {
				ids = append(ids, p.GetAuthenticated().GetPrincipalName().GetExact())
			}
			return ids
		}
		t.Fatalf("listener update without %q: %v", listenerInbound, resp.GetResources())
		return nil
	}

	if got := next(); len(got) != 1 || got[0] != testID("a") {
		t.Fatalf("inbound principals = %v, want [%s]", got, testID("a"))
	}
	if _, err := s.Quarantine(ctx, testID("a")); err != nil {
		t.Fatalf("Quarantine(a) = %v", err)
	}
	if got := next(); len(got) != 0 {
		t.Errorf("inbound principals while a is quarantined = %v, want none", got)
	}
	if _, err := s.Release(ctx, testID("a")); err != nil {
		t.Fatalf("Release(a) = %v", err)
	}
	if got := next(); len(got) != 1 || got[0] != testID("a") {
		t.Errorf("inbound principals after release = %v, want [%s]", got, testID("a"))
	}
}
