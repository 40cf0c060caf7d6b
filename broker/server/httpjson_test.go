package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDecodeTrailingData(t *testing.T) {
	tests := []struct {
		name string
		body string
		msg  string // empty when the body is accepted
	}{
		{"object alone", `{"ttl":"1m"}`, ""},
		{"trailing whitespace", "{\"ttl\":\"1m\"} \n", ""},
		{"stray closing brace", `{"ttl":"1m"}}`, "data after the request object"},
		{"stray closing bracket", `{"ttl":"1m"}]`, "data after the request object"},
		{"second object", `{"ttl":"1m"}{"ttl":"2m"}`, "data after the request object"},
		{"trailing word", `{"ttl":"1m"} x`, "data after the request object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/v1/issue/x509", strings.NewReader(tt.body))
			var body x509Request
			err := decode(r, &body)
			switch {
			case tt.msg == "" && err != nil:
				t.Errorf("decode(%q) = %v, want nil", tt.body, err)
			case tt.msg != "" && err == nil:
				t.Errorf("decode(%q) = nil, want an error containing %q", tt.body, tt.msg)
			case tt.msg != "" && !strings.Contains(err.msg, tt.msg):
				t.Errorf("decode(%q) = %q, want it to contain %q", tt.body, err.msg, tt.msg)
			}
		})
	}
}
