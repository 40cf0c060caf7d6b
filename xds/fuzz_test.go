package xds

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FuzzCleanMessage checks that NACK text from a peer, which ward stores and
// logs, is bounded and never keeps a PEM block.
func FuzzCleanMessage(f *testing.F) {
	f.Add("unsupported tls_params field")
	f.Add("bad key -----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----")
	f.Add(strings.Repeat("x", 5000))
	f.Fuzz(func(t *testing.T, msg string) {
		got := cleanMessage(msg)
		if strings.Contains(got, "-----BEGIN") {
			t.Errorf("cleanMessage(%q) = %q, keeps a PEM header", msg, got)
		}
		if len(got) > maxNACKMessage+len("…") {
			t.Errorf("cleanMessage(%d bytes) = %d bytes, want at most %d", len(msg), len(got), maxNACKMessage+len("…"))
		}
		if utf8.ValidString(msg) && !utf8.ValidString(got) {
			t.Errorf("cleanMessage(%q) = %q, not valid UTF-8", msg, got)
		}
	})
}

// FuzzValidateService checks that service validation never panics and that
// an accepted service renders resources that pass validation.
func FuzzValidateService(f *testing.F) {
	f.Add("a", "spiffe://example.org/ns/test/sa/a", "grpc", "127.0.0.1:7001", uint32(0))
	f.Add("web", "spiffe://example.org/web", "envoy", "10.0.0.1:9443", uint32(8080))
	f.Add("x", "spiffe://example.org/x", "envoy", "[::1]:1", uint32(65536))
	td := spiffeid.RequireTrustDomainFromString(testTD)
	f.Fuzz(func(t *testing.T, name, id, kind, endpoint string, appPort uint32) {
		svc := Service{Name: name, SPIFFEID: id, Kind: Kind(kind), Endpoints: []string{endpoint}, AppPort: appPort}
		if err := validateServices([]Service{svc}, td); err != nil {
			return
		}
		c, err := newGRPCClient(&svc)
		if err != nil {
			t.Fatalf("newGRPCClient(valid %+v) = %v", svc, err)
		}
		res, err := renderGRPC(&svc, []*grpcClient{c}, []string{id})
		if err != nil {
			t.Fatalf("renderGRPC(valid %+v) = %v", svc, err)
		}
		if _, err := buildSet(res, nil); err != nil {
			t.Errorf("buildSet(valid %+v) = %v", svc, err)
		}
	})
}
