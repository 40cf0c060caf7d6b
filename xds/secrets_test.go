package xds

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
)

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestSDSSecretsNotLogged(t *testing.T) {
	ca := newTestCA(t)
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, addr := startServer(t, Config{Services: threeServices(), Authorizer: newFakeAuthz([2]string{testID("a"), testID("c")}), Issuer: ca, Logger: logger})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	cert := ca.tlsCert(t, testID("c"))
	cc := dialADS(t, addr, &cert, ca.TrustBundlePEM())

	// State of the world.
	resp, err := fetch(ctx, cc, testID("c"), resource.SecretType)
	if err != nil {
		t.Fatalf("fetch(secrets) = %v", err)
	}
	var key []byte
	for _, a := range resp.GetResources() {
		sec := &tlsv3.Secret{}
		if err := a.UnmarshalTo(sec); err != nil {
			t.Fatal(err)
		}
		if k := sec.GetTlsCertificate().GetPrivateKey().GetInlineBytes(); k != nil {
			key = k
		}
	}
	if !bytes.Contains(key, []byte("PRIVATE KEY")) {
		t.Fatalf("SDS response has no private key, got %d resources", len(resp.GetResources()))
	}

	// Delta, with a NACK whose message quotes the key.
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: testID("c")}, TypeUrl: resource.SecretType, ResourceNamesSubscribe: []string{SecretSVID}}); err != nil {
		t.Fatal(err)
	}
	dresp, err := stream.Recv()
	if err != nil {
		t.Fatalf("delta Recv() = %v", err)
	}
	if len(dresp.GetResources()) != 1 {
		t.Fatalf("delta secrets = %d, want 1", len(dresp.GetResources()))
	}
	// The delta resource version is go-control-plane's SHA-256 of the whole
	// secret, sent only to the node that receives the key itself. It must
	// not reach a log either.
	wireVersion := dresp.GetResources()[0].GetVersion()
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.SecretType, ResponseNonce: dresp.GetNonce(),
		ErrorDetail: &status.Status{Code: 3, Message: "cannot load key " + string(key)}}); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); typeStatus(s.Status(), testID("c"), resource.SecretType).NACK == nil; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("delta NACK not recorded: status %+v", typeStatus(s.Status(), testID("c"), resource.SecretType))
		}
	}
	if msg := typeStatus(s.Status(), testID("c"), resource.SecretType).NACK.Message; strings.Contains(msg, "PRIVATE KEY") {
		t.Errorf("NACK message keeps the key: %q", msg)
	}

	out := logs.String()
	body := strings.TrimSpace(strings.SplitN(string(key), "\n", 3)[1])
	if strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, body) || strings.Contains(out, wireVersion) {
		t.Errorf("logs contain private key material:\n%s", out)
	}
	if !strings.Contains(out, "xds node rejected configuration") {
		t.Errorf("logs lack the NACK line:\n%s", out)
	}
}

// TestDeltaAndSotwStreamIDs opens the first state-of-the-world stream and
// the first delta stream, which go-control-plane both numbers 1, and checks
// that closing one leaves the other bound.
func TestDeltaAndSotwStreamIDs(t *testing.T) {
	ca := newTestCA(t)
	_, addr := startServer(t, Config{Services: threeServices(), Authorizer: newFakeAuthz(), Issuer: ca})
	cert := ca.tlsCert(t, testID("c"))
	cc := dialADS(t, addr, &cert, ca.TrustBundlePEM())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	delta, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: testID("c")}
	if err := delta.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := delta.Recv(); err != nil {
		t.Fatalf("delta Recv() = %v", err)
	}

	// A state-of-the-world stream opens and closes.
	if _, err := fetch(ctx, cc, testID("c"), resource.ListenerType); err != nil {
		t.Fatalf("fetch() = %v", err)
	}
	time.Sleep(50 * time.Millisecond) // let the server see the close

	if err := delta.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.SecretType, ResourceNamesSubscribe: []string{SecretSVID}}); err != nil {
		t.Fatal(err)
	}
	resp, err := delta.Recv()
	if err != nil {
		t.Fatalf("delta Recv() after a sotw stream closed = %v", err)
	}
	if resp.GetTypeUrl() != resource.SecretType {
		t.Errorf("delta response type = %q, want %q", resp.GetTypeUrl(), resource.SecretType)
	}
}
