package server

import (
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// appendPolicy appends lines to the server's policy file and returns the
// line number of the first one.
func appendPolicy(t *testing.T, ts *testServer, lines string) int {
	t.Helper()
	path := ts.srv.cfg.Policy.File
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(old)
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	first := strings.Count(text, "\n") + 1
	if err := os.WriteFile(path, []byte(text+lines), 0o644); err != nil {
		t.Fatal(err)
	}
	return first
}

func TestPolicyReloadUnknownMeshService(t *testing.T) {
	const (
		web   = "spiffe://ward.test/ns/shop/sa/web"
		ghost = "spiffe://ward.test/ns/shop/sa/ghost"
	)
	ts := startWithMesh(t)
	version := ts.srv.authz.Version()

	line := appendPolicy(t, ts, "p, "+web+", dev, service/"+ghost+", connect, allow\n")
	var rejected map[string]any
	code := ts.call(t, "POST", "/v1/policy/reload", nil, &rejected)
	if code != http.StatusUnprocessableEntity {
		t.Fatalf("POST /v1/policy/reload with an unknown service = %d %v, want 422", code, rejected)
	}
	msg, _ := rejected["error"].(string)
	if want := "policy.csv:" + strconv.Itoa(line); !strings.Contains(msg, want) {
		t.Errorf("reload error = %q, want it to name %s", msg, want)
	}
	if !strings.Contains(msg, ghost) {
		t.Errorf("reload error = %q, want it to name %s", msg, ghost)
	}
	if got := ts.srv.authz.Version(); got != version {
		t.Errorf("policy version after rejected reload = %d, want %d", got, version)
	}

	var status map[string]any
	if code := ts.call(t, "GET", "/v1/mesh/status", nil, &status); code != http.StatusOK {
		t.Fatalf("GET /v1/mesh/status = %d, want 200", code)
	}
	if e, _ := status["build_error"].(string); e != "" {
		t.Errorf("build_error after rejected reload = %q, want none", e)
	}
}

func TestPolicyReloadKnownMeshService(t *testing.T) {
	const (
		web    = "spiffe://ward.test/ns/shop/sa/web"
		orders = "spiffe://ward.test/ns/shop/sa/orders"
	)
	ts := startWithMesh(t)
	version := ts.srv.authz.Version()
	builds := waitMeshBuild(t, ts, 0)

	appendPolicy(t, ts, "p, "+web+", dev, service/"+orders+", connect, allow\np, "+web+", dev, service/spiffe://ward.test/ns/other/*, connect, allow\n")
	var resp map[string]any
	if code := ts.call(t, "POST", "/v1/policy/reload", nil, &resp); code != http.StatusOK {
		t.Fatalf("POST /v1/policy/reload with a known service = %d %v, want 200", code, resp)
	}
	if got := ts.srv.authz.Version(); got != version+1 {
		t.Errorf("policy version after reload = %d, want %d", got, version+1)
	}
	if !ts.srv.authz.Decide(web, "dev", "service/"+orders, "connect").Allowed {
		t.Errorf("Decide(web connect orders) after reload = denied, want allowed")
	}

	// The mesh rebuilds after its debounce delay, listing the new rules.
	waitMeshBuild(t, ts, builds)
	if e := ts.srv.mesh.Status().BuildError; e != "" {
		t.Errorf("mesh build_error after reload = %q, want none", e)
	}
}

// waitMeshBuild waits up to 10 s until the mesh has made more than after
// builds, and returns their number.
func waitMeshBuild(t *testing.T, ts *testServer, after uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if n := ts.srv.mesh.Status().Builds; n > after {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("mesh builds = %d after 10 s, want more than %d", ts.srv.mesh.Status().Builds, after)
	return 0
}

func TestPolicyReloadUnknownMeshSubject(t *testing.T) {
	const orders = "spiffe://ward.test/ns/shop/sa/orders"
	ts := startWithMesh(t)

	line := appendPolicy(t, ts, "p, spiffe://ward.test/ns/shop/sa/ghost, *, service/"+orders+", connect, allow\n")
	var rejected map[string]any
	code := ts.call(t, "POST", "/v1/policy/reload", nil, &rejected)
	msg, _ := rejected["error"].(string)
	if code != http.StatusUnprocessableEntity || !strings.Contains(msg, "policy.csv:"+strconv.Itoa(line)) {
		t.Errorf("POST /v1/policy/reload with an unknown subject = %d %q, want 422 naming policy.csv:%d", code, msg, line)
	}
}
