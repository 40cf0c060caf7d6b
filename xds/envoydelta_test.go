package xds

import (
	"context"
	"sync/atomic"
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

	// A reader ACKs every listener update after ackDelay and reports the
	// principals the inbound listener admits.
	var ackDelay atomic.Int64
	principals := make(chan []string, 8)
	go func() {
		defer close(principals)
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			time.Sleep(time.Duration(ackDelay.Load()))
			if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType, ResponseNonce: resp.GetNonce()}); err != nil {
				return
			}
			principals <- inboundPrincipals(t, resp)
		}
	}()
	next := func() []string {
		t.Helper()
		select {
		case ids, ok := <-principals:
			if !ok {
				t.Fatal("stream ended")
			}
			return ids
		case <-ctx.Done():
			t.Fatal("no listener update")
		}
		return nil
	}

	if got := next(); len(got) != 1 || got[0] != testID("a") {
		t.Fatalf("inbound principals = %v, want [%s]", got, testID("a"))
	}

	// Quarantine waits for the Envoy node's ACK, which comes 200 ms late.
	ackDelay.Store(int64(200 * time.Millisecond))
	took, err := s.Quarantine(ctx, testID("a"))
	if err != nil {
		t.Fatalf("Quarantine(a) = %v", err)
	}
	if took < 200*time.Millisecond {
		t.Errorf("Quarantine(a) returned after %v, before the Envoy node's ACK", took)
	}
	if got := next(); len(got) != 0 {
		t.Errorf("inbound principals while a is quarantined = %v, want none", got)
	}

	ackDelay.Store(0)
	if _, err := s.Release(ctx, testID("a")); err != nil {
		t.Fatalf("Release(a) = %v", err)
	}
	if got := next(); len(got) != 1 || got[0] != testID("a") {
		t.Errorf("inbound principals after release = %v, want [%s]", got, testID("a"))
	}
}

// inboundPrincipals returns the SPIFFE IDs the inbound listener in resp
// admits, or nil when resp does not carry it.
func inboundPrincipals(t *testing.T, resp *discoveryv3.DeltaDiscoveryResponse) []string {
	for _, r := range resp.GetResources() {
		if r.GetName() != listenerInbound {
			continue
		}
		l := &listenerv3.Listener{}
		if err := r.GetResource().UnmarshalTo(l); err != nil {
			t.Error(err)
			return nil
		}
		rbac := &netrbacv3.RBAC{}
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(rbac); err != nil {
			t.Error(err)
			return nil
		}
		ids := []string{}
		for _, p := range rbac.GetRules().GetPolicies()[rbacPolicyConnect].GetPrincipals() {
			ids = append(ids, p.GetAuthenticated().GetPrincipalName().GetExact())
		}
		return ids
	}
	return nil
}
