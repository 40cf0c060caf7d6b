package xds

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// fakeClock is a settable clock for renewal tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func servedSecret(t *testing.T, s *Server, node, name string) *tlsv3.Secret {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.nodes[node].served[resource.SecretType].items {
		if sec := r.(*tlsv3.Secret); sec.GetName() == name {
			return sec
		}
	}
	t.Fatalf("node %s has no secret %q", node, name)
	return nil
}

func TestSDSRenewalAndRotation(t *testing.T) {
	ca := newTestCA(t)
	clock := &fakeClock{now: time.Now()}
	s, err := New(Config{TrustDomain: testTD, Services: threeServices(), Authorizer: newFakeAuthz(), Issuer: ca, SVIDTTL: time.Hour, Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	envoyNode := testID("c")

	if err := s.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	first := servedSecret(t, s, envoyNode, SecretSVID).GetTlsCertificate().GetCertificateChain().GetInlineBytes()

	t.Run("before half life", func(t *testing.T) {
		clock.Advance(29 * time.Minute)
		if err := s.Rebuild(ctx); err != nil {
			t.Fatal(err)
		}
		got := servedSecret(t, s, envoyNode, SecretSVID).GetTlsCertificate().GetCertificateChain().GetInlineBytes()
		if !bytes.Equal(got, first) {
			t.Error("SVID renewed before half its lifetime")
		}
	})

	t.Run("after half life", func(t *testing.T) {
		clock.Advance(2 * time.Minute)
		if d := s.untilRenewal(); d != time.Second {
			t.Errorf("untilRenewal() = %v past half life, want the 1s floor", d)
		}
		if err := s.Rebuild(ctx); err != nil {
			t.Fatal(err)
		}
		got := servedSecret(t, s, envoyNode, SecretSVID).GetTlsCertificate().GetCertificateChain().GetInlineBytes()
		if bytes.Equal(got, first) {
			t.Error("SVID not renewed after half its lifetime")
		}
	})

	t.Run("CA rotation", func(t *testing.T) {
		ca.rotate(t, true)
		if err := s.Rebuild(ctx); err != nil {
			t.Fatal(err)
		}
		bundle := servedSecret(t, s, envoyNode, SecretTrustBundle).GetValidationContext().GetTrustedCa().GetInlineBytes()
		if n := bytes.Count(bundle, []byte("BEGIN CERTIFICATE")); n != 2 {
			t.Errorf("trust bundle during rotation has %d CAs, want old and new", n)
		}
	})
}
