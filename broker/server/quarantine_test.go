package server

import (
	"context"
	"net/http"
	"testing"

	"ward.dev/ward/internal/store"
)

func TestQuarantineRevokesAndDenies(t *testing.T) {
	ts := startServer(t, nil)
	const id = "spiffe://ward.test/ns/shop/sa/web"
	issue := func() (int, x509Response) {
		var resp x509Response
		code := ts.call(t, "POST", "/v1/issue/x509", map[string]any{"csr": newCSR(t, ""), "spiffe_id": id}, &resp)
		return code, resp
	}

	code, before := issue()
	if code != http.StatusOK {
		t.Fatalf("issue before quarantine = %d, want 200", code)
	}
	var q map[string]any
	if code := ts.call(t, "POST", "/v1/mesh/quarantine", map[string]string{"spiffe_id": id, "reason": "test"}, &q); code != http.StatusOK {
		t.Fatalf("quarantine = %d %v, want 200", code, q)
	}
	if n := q["revoked_leases"].(float64); n != 1 {
		t.Errorf("revoked_leases = %v, want 1", n)
	}
	l, _ := ts.srv.leases.Get(context.Background(), before.LeaseID)
	if l.State != store.StateRevoked {
		t.Errorf("lease state after quarantine = %s, want revoked", l.State)
	}
	if code, _ := issue(); code != http.StatusForbidden {
		t.Errorf("issue during quarantine = %d, want 403", code)
	}

	if code := ts.call(t, "POST", "/v1/mesh/release", map[string]string{"spiffe_id": id}, nil); code != http.StatusOK {
		t.Fatalf("release = %d, want 200", code)
	}
	if code, _ := issue(); code != http.StatusOK {
		t.Errorf("issue after release = %d, want 200", code)
	}
}

func TestQuarantineRequiresReason(t *testing.T) {
	ts := startServer(t, nil)
	var resp map[string]string
	code := ts.call(t, "POST", "/v1/mesh/quarantine", map[string]string{"spiffe_id": "spiffe://ward.test/x"}, &resp)
	if code != http.StatusBadRequest {
		t.Errorf("quarantine without reason = %d, want 400", code)
	}
}
