package server

import (
	"net/http"
	"os"
	"strings"
	"testing"
)

func TestTokenizeRoundTripNeedsDetokenizePermission(t *testing.T) {
	ts := startServer(t, nil)
	var tok struct {
		Tokens []string `json:"tokens"`
	}
	if code := ts.call(t, "POST", "/v1/transform/tokenize", map[string]any{"rule": "email", "values": []string{"alice@example.com"}}, &tok); code != http.StatusOK {
		t.Fatalf("tokenize = %d, want 200", code)
	}
	if len(tok.Tokens) != 1 || strings.Contains(tok.Tokens[0], "alice") {
		t.Fatalf("tokens = %v, want one opaque token", tok.Tokens)
	}

	var back struct {
		Values []string `json:"values"`
	}
	if code := ts.call(t, "POST", "/v1/transform/detokenize", map[string]any{"rule": "email", "values": tok.Tokens}, &back); code != http.StatusOK {
		t.Fatalf("detokenize as admin = %d, want 200", code)
	}
	if len(back.Values) != 1 || back.Values[0] != "alice@example.com" {
		t.Errorf("detokenize = %v, want [alice@example.com]", back.Values)
	}

	// A workload without the permission is refused, and the refusal is audited.
	workload := ts.workloadClient(t, "spiffe://ward.test/ns/shop/sa/web")
	var denied map[string]string
	if code := workload.call(t, "POST", "/v1/transform/detokenize", map[string]any{"rule": "email", "values": tok.Tokens}, &denied); code != http.StatusForbidden {
		t.Errorf("detokenize as workload = %d %v, want 403", code, denied)
	}
	audit, _ := os.ReadFile(ts.srv.cfg.Audit.Path)
	if !strings.Contains(string(audit), `"action":"detokenize","object":"tokens/email","domain":"dev","decision":"deny"`) {
		t.Error("audit log has no deny line for the refused detokenize")
	}
	if strings.Contains(string(audit), "alice@example.com") {
		t.Error("audit log contains a detokenized value")
	}
}

func TestTokenizeRejectsNull(t *testing.T) {
	ts := startServer(t, nil)
	var resp map[string]string
	code := ts.call(t, "POST", "/v1/transform/tokenize", map[string]any{"rule": "email", "values": []any{"a", nil}}, &resp)
	if code != http.StatusBadRequest || !strings.Contains(resp["error"], "values[1] is null") {
		t.Errorf("tokenize with a null value = %d %q, want 400 naming values[1]", code, resp["error"])
	}
}
