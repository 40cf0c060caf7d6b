package xds

import (
	"encoding/json"
	"os"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/yaml.v3"
)

func TestEnvoyBootstrap(t *testing.T) {
	raw, err := os.ReadFile("../deploy/envoy/bootstrap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		t.Fatalf("protojson.Unmarshal(bootstrap) = %v", err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Errorf("bootstrap.ValidateAll() = %v", err)
	}
	if got := b.GetStaticResources().GetClusters()[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue(); got != 18000 {
		t.Errorf("ward-xds port = %d, want 18000", got)
	}
}

func TestGRPCBootstrapJSON(t *testing.T) {
	b := GRPCBootstrap{ServerURI: "127.0.0.1:18000", NodeID: testID("a"), CertFile: "c.pem", KeyFile: "k.pem", CAFile: "ca.pem", Refresh: 1500 * 1e6}
	js, err := b.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	cfg := doc["certificate_providers"].(map[string]any)[CertProviderInstance].(map[string]any)["config"].(map[string]any)
	if got := cfg["refresh_interval"]; got != "1.5s" {
		t.Errorf("refresh_interval = %v, want 1.5s", got)
	}
	if got := doc["server_listener_resource_name_template"]; got != GRPCServerListenerTemplate {
		t.Errorf("template = %v, want %q", got, GRPCServerListenerTemplate)
	}
	if _, err := (GRPCBootstrap{}).JSON(); err == nil {
		t.Error("GRPCBootstrap{}.JSON() = nil error, want missing fields")
	}
}
