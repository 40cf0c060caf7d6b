package xds

import (
	"context"
	"crypto/tls"
	"slices"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func threeServices() []Service {
	return []Service{
		{Name: "a", SPIFFEID: testID("a"), Kind: KindGRPC, Endpoints: []string{"127.0.0.1:7001"}},
		{Name: "b", SPIFFEID: testID("b"), Kind: KindGRPC, Endpoints: []string{"127.0.0.1:7002"}},
		{Name: "c", SPIFFEID: testID("c"), Kind: KindEnvoy, Endpoints: []string{"127.0.0.1:7003"}, AppPort: 8080},
	}
}

func TestADSNodeIdentity(t *testing.T) {
	ca := newTestCA(t)
	_, addr := startServer(t, Config{Services: threeServices(), Authorizer: newFakeAuthz(), Issuer: ca})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	certB := ca.tlsCert(t, testID("b"))
	ccB := dialADS(t, addr, &certB, ca.TrustBundlePEM())

	t.Run("other node id", func(t *testing.T) {
		resp, err := fetch(ctx, ccB, testID("a"), resource.ListenerType)
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("fetch(cert b, node a) = %v, %v, want PermissionDenied", resp, err)
		}
	})

	t.Run("own node id", func(t *testing.T) {
		resp, err := fetch(ctx, ccB, testID("b"), resource.ListenerType)
		if err != nil {
			t.Fatalf("fetch(cert b, node b) = %v", err)
		}
		var got []string
		for _, a := range resp.GetResources() {
			l := &listenerv3.Listener{}
			if err := a.UnmarshalTo(l); err != nil {
				t.Fatal(err)
			}
			got = append(got, l.GetName())
		}
		if !slices.Contains(got, "grpc/server?xds.resource.listening_address=127.0.0.1:7002") {
			t.Errorf("listeners for b = %v, want b's server listener", got)
		}
		if slices.Contains(got, "grpc/server?xds.resource.listening_address=127.0.0.1:7001") {
			t.Errorf("listeners for b = %v, contain a's server listener", got)
		}
	})

	t.Run("no client certificate", func(t *testing.T) {
		cc := dialADS(t, addr, nil, ca.TrustBundlePEM())
		if resp, err := fetch(ctx, cc, testID("b"), resource.ListenerType); err == nil {
			t.Fatalf("fetch(no cert) = %v, want an error", resp)
		}
	})

	t.Run("certificate from another CA", func(t *testing.T) {
		other := newTestCA(t)
		cert := other.tlsCert(t, testID("b"))
		cc := dialADS(t, addr, &cert, ca.TrustBundlePEM())
		if resp, err := fetch(ctx, cc, testID("b"), resource.ListenerType); err == nil {
			t.Fatalf("fetch(foreign cert) = %v, want an error", resp)
		}
	})

	t.Run("other trust domain", func(t *testing.T) {
		cert := ca.tlsCert(t, "spiffe://evil.example/ns/test/sa/b")
		cc := dialADS(t, addr, &cert, ca.TrustBundlePEM())
		if resp, err := fetch(ctx, cc, "spiffe://evil.example/ns/test/sa/b", resource.ListenerType); err == nil {
			t.Fatalf("fetch(foreign trust domain) = %v, want an error", resp)
		}
	})

	t.Run("rotated CA", func(t *testing.T) {
		// During a rotation the bundle holds both CAs, so certificates of
		// either are accepted.
		ca.rotate(t, true)
		certNew := ca.tlsCert(t, testID("b"))
		cc := dialADS(t, addr, &certNew, ca.TrustBundlePEM())
		if _, err := fetch(ctx, cc, testID("b"), resource.ListenerType); err != nil {
			t.Errorf("fetch(new CA cert) = %v", err)
		}
		ccOld := dialADS(t, addr, &certB, ca.TrustBundlePEM())
		if _, err := fetch(ctx, ccOld, testID("b"), resource.ListenerType); err != nil {
			t.Errorf("fetch(old CA cert) = %v", err)
		}
	})
}

func TestServingCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	t.Run("issued for ServerID", func(t *testing.T) {
		ca := newTestCA(t)
		_, addr := startServer(t, Config{Services: threeServices(), Authorizer: newFakeAuthz(), Issuer: ca})
		cert := ca.tlsCert(t, testID("a"))
		if _, err := fetch(ctx, dialADS(t, addr, &cert, ca.TrustBundlePEM()), testID("a"), resource.ListenerType); err != nil {
			t.Fatalf("fetch() = %v", err)
		}
		ca.mu.Lock()
		defer ca.mu.Unlock()
		if n := ca.issued["spiffe://"+testTD+"/ward/xds"]; n != 1 {
			t.Errorf("SVIDs issued for the default ServerID = %d, want 1", n)
		}
	})

	t.Run("supplied by ServerCertificate", func(t *testing.T) {
		ca := newTestCA(t)
		serving := ca.tlsCert(t, "spiffe://"+testTD+"/custom/xds")
		_, addr := startServer(t, Config{Services: threeServices(), Authorizer: newFakeAuthz(), Issuer: ca,
			ServerCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &serving, nil }})
		cert := ca.tlsCert(t, testID("a"))
		if _, err := fetch(ctx, dialADS(t, addr, &cert, ca.TrustBundlePEM()), testID("a"), resource.ListenerType); err != nil {
			t.Fatalf("fetch() = %v", err)
		}
		ca.mu.Lock()
		defer ca.mu.Unlock()
		if n := ca.issued["spiffe://"+testTD+"/ward/xds"]; n != 0 {
			t.Errorf("SVIDs issued for ServerID = %d with ServerCertificate set, want 0", n)
		}
	})
}

// plainIssuer hides testCA's ServingIssuer method.
type plainIssuer struct{ ca *testCA }

func (p plainIssuer) IssueSVID(ctx context.Context, id string, ttl time.Duration) ([]byte, []byte, time.Time, error) {
	return p.ca.IssueSVID(ctx, id, ttl)
}
func (p plainIssuer) TrustBundlePEM() []byte { return p.ca.TrustBundlePEM() }

func TestServingCertificateHostNames(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	t.Run("ServingIssuer adds the host", func(t *testing.T) {
		ca := newTestCA(t)
		ca.noIPs = true
		_, addr := startServer(t, Config{Services: threeServices(), Authorizer: newFakeAuthz(), Issuer: ca})
		cert := ca.tlsCert(t, testID("a"))
		// dialADS verifies the server's certificate for 127.0.0.1, as gRPC does.
		if _, err := fetch(ctx, dialADS(t, addr, &cert, ca.TrustBundlePEM()), testID("a"), resource.ListenerType); err != nil {
			t.Fatalf("fetch() = %v", err)
		}
	})

	t.Run("plain Issuer lacks the host", func(t *testing.T) {
		ca := newTestCA(t)
		ca.noIPs = true
		_, addr := startServer(t, Config{Services: threeServices(), Authorizer: newFakeAuthz(), Issuer: plainIssuer{ca}})
		cert := ca.tlsCert(t, testID("a"))
		if _, err := fetch(ctx, dialADS(t, addr, &cert, ca.TrustBundlePEM()), testID("a"), resource.ListenerType); err == nil {
			t.Fatal("fetch() = nil error, want a host name mismatch")
		}
	})
}

func TestServerHostsDefault(t *testing.T) {
	tests := []struct {
		addr string
		want []string
	}{
		{"127.0.0.1:18000", []string{"127.0.0.1"}},
		{"ward.example.org:18000", []string{"ward.example.org"}},
		{"0.0.0.0:18000", nil},
		{":18000", nil},
	}
	for _, tt := range tests {
		s, err := New(Config{Addr: tt.addr, TrustDomain: testTD, Authorizer: newFakeAuthz(), Issuer: fixedIssuer{}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(s.cfg.ServerHosts, tt.want) {
			t.Errorf("New(Addr %q).ServerHosts = %v, want %v", tt.addr, s.cfg.ServerHosts, tt.want)
		}
	}
}
