package xds

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// fixedIssuer returns the same placeholder PEM every time, so rendered
// resources are byte-for-byte reproducible. The bodies are not real keys.
type fixedIssuer struct{}

func (fixedIssuer) IssueSVID(_ context.Context, id string, _ time.Duration) ([]byte, []byte, time.Time, error) {
	return []byte("-----BEGIN CERTIFICATE-----\nplaceholder for " + id + "\n-----END CERTIFICATE-----\n"),
		[]byte("-----BEGIN PRIVATE KEY-----\nplaceholder\n-----END PRIVATE KEY-----\n"),
		time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), nil
}

func (fixedIssuer) TrustBundlePEM() []byte {
	return []byte("-----BEGIN CERTIFICATE-----\nplaceholder old root\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nplaceholder new root\n-----END CERTIFICATE-----\n")
}

func envoyMesh() []Service {
	return []Service{
		{Name: "web", SPIFFEID: testID("web"), Kind: KindEnvoy, Endpoints: []string{"10.0.0.1:9443", "10.0.0.2:9443"}, AppPort: 8080},
		{Name: "orders", SPIFFEID: testID("orders"), Kind: KindEnvoy, Endpoints: []string{"10.0.1.1:9443"}, AppPort: 8081, LocalPort: 15001},
		{Name: "payments", SPIFFEID: testID("payments"), Kind: KindEnvoy, Endpoints: []string{"10.0.2.1:9443"}, AppPort: 8082, LocalPort: 15002},
	}
}

func TestEnvoyGolden(t *testing.T) {
	az := newFakeAuthz(
		[2]string{testID("web"), testID("orders")},
		[2]string{testID("orders"), testID("payments")},
	)
	s, err := New(Config{TrustDomain: testTD, Domain: "prod", Services: envoyMesh(), Authorizer: az, Issuer: fixedIssuer{}})
	if err != nil {
		t.Fatal(err)
	}
	sets, err := s.render(context.Background(), envoyMesh(), nil)
	if err != nil {
		t.Fatalf("render() = %v", err)
	}

	got := renderGolden(t, sets)
	path := filepath.Join("testdata", "envoy_mesh.golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./xds -run TestEnvoyGolden -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("rendered Envoy resources differ from %s; rerun with -update and review the diff", path)
	}

	// Versions are content hashes: an identical render has identical
	// versions, and a policy change alters only the affected types.
	again, err := s.render(context.Background(), envoyMesh(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for node, set := range sets {
		for typ, ts := range set {
			if got := again[node][typ].version; got != ts.version {
				t.Errorf("%s %s: version %q on second render, want %q", node, typ, got, ts.version)
			}
		}
	}
	az.set(testID("payments"), testID("web"), true)
	changed, err := s.render(context.Background(), envoyMesh(), nil)
	if err != nil {
		t.Fatal(err)
	}
	web, payments := testID("web"), testID("payments")
	if changed[web][resource.ListenerType].version == sets[web][resource.ListenerType].version {
		t.Errorf("web listener version unchanged after payments was allowed in")
	}
	if changed[payments][resource.ClusterType].version == sets[payments][resource.ClusterType].version {
		t.Errorf("payments cluster version unchanged after it gained an upstream")
	}
	if changed[payments][resource.ListenerType].version != sets[payments][resource.ListenerType].version {
		t.Errorf("payments listener version changed, but its callers did not")
	}

	// Each resource of every node passes proto validation.
	for node, set := range sets {
		for typ, ts := range set {
			for _, r := range ts.items {
				if err := validate(r); err != nil {
					t.Errorf("%s %s: %v", node, typ, err)
				}
			}
		}
	}
}

// renderGolden writes each node's resources as indented JSON, nodes and
// types in sorted order. protojson output is compacted and re-indented
// because protojson varies its spacing on purpose.
func renderGolden(t *testing.T, sets map[string]nodeSet) []byte {
	t.Helper()
	doc := map[string]map[string][]json.RawMessage{}
	for node, set := range sets {
		doc[node] = map[string][]json.RawMessage{}
		for typ, ts := range set {
			for _, r := range ts.items {
				b, err := protojson.Marshal(r)
				if err != nil {
					t.Fatalf("marshal %s: %v", cache.GetResourceName(r), err)
				}
				var compact bytes.Buffer
				if err := json.Compact(&compact, b); err != nil {
					t.Fatal(err)
				}
				doc[node][typ] = append(doc[node][typ], compact.Bytes())
			}
		}
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}
