package server

import (
	"net/http"
	"strings"
	"testing"

	"ward.dev/ward/internal/config"
)

func startWithMesh(t *testing.T) *testServer {
	t.Helper()
	return startServer(t, func(c *config.Config) {
		c.Listen.XDS = "127.0.0.1:0"
		c.Mesh = config.Mesh{Enabled: true, Services: []config.MeshService{
			{Name: "web", SPIFFEID: "spiffe://ward.test/ns/shop/sa/web", Kind: "grpc", Endpoints: []string{"127.0.0.1:7001"}},
			{Name: "orders", SPIFFEID: "spiffe://ward.test/ns/shop/sa/orders", Kind: "grpc", Endpoints: []string{"127.0.0.1:7002"}},
		}}
	})
}

func TestMeshServicesThroughAPI(t *testing.T) {
	ts := startWithMesh(t)
	var status map[string]any
	if code := ts.call(t, "GET", "/v1/mesh/status", nil, &status); code != http.StatusOK {
		t.Fatalf("mesh status = %d, want 200", code)
	}
	if e, _ := status["build_error"].(string); e != "" {
		t.Errorf("build_error = %q, want none", e)
	}

	add := map[string]any{"name": "payments", "spiffe_id": "spiffe://ward.test/ns/shop/sa/payments", "kind": "envoy",
		"endpoints": []string{"127.0.0.1:7003"}, "app_port": 8080}
	if code := ts.call(t, "POST", "/v1/mesh/services", add, nil); code != http.StatusOK {
		t.Fatalf("add service = %d, want 200", code)
	}

	// An invalid port is rejected and the catalogue stays as it was.
	var bad map[string]string
	badSvc := map[string]any{"name": "broken", "spiffe_id": "spiffe://ward.test/x", "kind": "grpc", "endpoints": []string{"127.0.0.1:99999"}}
	if code := ts.call(t, "POST", "/v1/mesh/services", badSvc, &bad); code != http.StatusBadRequest {
		t.Errorf("add invalid service = %d %v, want 400", code, bad)
	}
	var list struct {
		Services []config.MeshService `json:"services"`
	}
	ts.call(t, "GET", "/v1/mesh/services", nil, &list)
	names := []string{}
	for _, s := range list.Services {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "web,orders,payments" {
		t.Errorf("services = %s, want web,orders,payments", got)
	}

	if code := ts.call(t, "DELETE", "/v1/mesh/services/web", nil, nil); code != http.StatusConflict {
		t.Errorf("remove a configured service = %d, want 409", code)
	}
	if code := ts.call(t, "DELETE", "/v1/mesh/services/payments", nil, nil); code != http.StatusOK {
		t.Errorf("remove an added service = %d, want 200", code)
	}
}

func TestQuarantineReportsMeshConvergence(t *testing.T) {
	ts := startWithMesh(t)
	var resp map[string]any
	code := ts.call(t, "POST", "/v1/mesh/quarantine", map[string]string{"spiffe_id": "spiffe://ward.test/ns/shop/sa/web", "reason": "test"}, &resp)
	if code != http.StatusOK {
		t.Fatalf("quarantine = %d %v", code, resp)
	}
	if _, ok := resp["mesh"].(map[string]any)["converged_ms"]; !ok {
		t.Errorf("quarantine response %v lacks mesh.converged_ms", resp)
	}
}
