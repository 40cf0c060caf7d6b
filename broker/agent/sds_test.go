package agent_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"ward.dev/ward/test/wardtest"
)

// TestSDSServesSecrets subscribes to the agent's SDS socket as Envoy would
// and checks the certificate, key and trust bundle it streams.
func TestSDSServesSecrets(t *testing.T) {
	t.Parallel()
	srv := wardtest.StartDev(t)
	sockDir, err := os.MkdirTemp("", "sds")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "sds.sock")
	dir := t.TempDir()
	startAgent(t, dir, fmt.Sprintf(`
broker: {addr: %s, ca_file: %s}
auth: {method: join_token, join_token_file: %s}
output_dir: %s
credentials:
  - {name: svid, path: x509, ttl: 1m}
sds: {socket: %s}
`, srv.Addr(), srv.CACertPath(), joinToken(t, srv, dir, webID), dir, sock))
	waitFor(t, 10*time.Second, "the SDS socket", func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := secretv3.NewSecretDiscoveryServiceClient(conn).StreamSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"default", "ROOTCA", "svid"}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.SecretType, ResourceNames: names, Node: &corev3.Node{Id: "envoy-test"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("StreamSecrets Recv = %v", err)
	}

	got := map[string]*tlsv3.Secret{}
	for _, res := range resp.Resources {
		var s tlsv3.Secret
		if err := res.UnmarshalTo(&s); err != nil {
			t.Fatal(err)
		}
		got[s.Name] = &s
	}
	for _, name := range names {
		if got[name] == nil {
			t.Errorf("SDS response lacks secret %q; has %v", name, slices.Collect(maps.Keys(got)))
		}
	}
	if s := got["default"]; s != nil {
		chain := s.GetTlsCertificate().GetCertificateChain().GetInlineBytes()
		block, _ := pem.Decode(chain)
		if block == nil {
			t.Fatal("default secret has no PEM certificate chain")
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if cert.URIs[0].String() != webID {
			t.Errorf("default certificate ID = %s, want %s", cert.URIs[0], webID)
		}
		if len(s.GetTlsCertificate().GetPrivateKey().GetInlineBytes()) == 0 {
			t.Error("default secret has no private key")
		}
	}
	if s := got["ROOTCA"]; s != nil && len(s.GetValidationContext().GetTrustedCa().GetInlineBytes()) == 0 {
		t.Error("ROOTCA secret has no trusted CA")
	}
}
