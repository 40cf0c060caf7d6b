package e2e

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/test/wardtest"
)

// TestWorkloadStaysWithinPolicy authenticates as a shop workload with its
// ward client certificate and tries everything the default policy does not
// grant it.
func TestWorkloadStaysWithinPolicy(t *testing.T) {
	s := startDev(t)
	const id = "spiffe://ward.test/ns/shop/sa/web"
	const other = "spiffe://ward.test/ns/shop/sa/orders"
	web := issueJoined(t, s, id, outDir(t, "web"))
	orders := issueAsAdmin(t, s, other, outDir(t, "orders"))

	pair, err := tls.LoadX509KeyPair(web.Certificate, web.Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.TLSConfig()
	cfg.Certificates = []tls.Certificate{pair}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}

	cases := []struct {
		name       string
		method     string
		path       string
		body       any
		wantStatus int
		wantMsg    string
	}{
		{"certificate for another workload", http.MethodPost, "/v1/issue/x509",
			map[string]string{"csr": string(newCSR(t, other)), "spiffe_id": other}, http.StatusForbidden, "may not issue x509/" + other},
		{"DNS SAN in the request", http.MethodPost, "/v1/issue/x509",
			map[string]any{"csr": string(newCSR(t, id)), "dns_names": []string{"evil.example"}}, http.StatusForbidden, "dns/evil.example"},
		{"DNS SAN in the CSR", http.MethodPost, "/v1/issue/x509",
			map[string]any{"csr": string(newCSRWithDNS(t, "evil.example"))}, http.StatusForbidden, "dns/evil.example"},
		{"IP SAN in the request", http.MethodPost, "/v1/issue/x509",
			map[string]any{"csr": string(newCSR(t, id)), "ip_addresses": []string{"10.0.0.1"}}, http.StatusForbidden, "ip/10.0.0.1"},
		{"JWT for another workload", http.MethodPost, "/v1/issue/jwt",
			map[string]any{"audience": []string{"x"}, "spiffe_id": other}, http.StatusForbidden, "may not issue jwt/" + other},
		{"join token", http.MethodPost, "/v1/tokens/join",
			map[string]string{"spiffe_id": other}, http.StatusForbidden, "may not issue token/" + other},
		{"revoke another's lease", http.MethodPost, "/v1/leases/revoke",
			map[string]string{"lease_id": orders.LeaseID}, http.StatusForbidden, "may not revoke"},
		{"revoke by prefix", http.MethodPost, "/v1/leases/revoke",
			map[string]string{"prefix": "x509/spiffe://ward.test/ns/shop/"}, http.StatusForbidden, "may not revoke"},
		{"policy reload", http.MethodPost, "/v1/policy/reload", nil, http.StatusForbidden, "may not reload policy"},
		{"policy check", http.MethodPost, "/v1/policy/check",
			map[string]string{"subject": id, "object": "x509/" + id, "action": "issue"}, http.StatusForbidden, "may not read policy"},
		{"metrics", http.MethodGet, "/metrics", nil, http.StatusForbidden, "may not read metrics"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := s.DoWith(t, client, "", tc.method, tc.path, tc.body)
			msg := wardtest.ErrorMessage(body)
			if status != tc.wantStatus || !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("%s %s as %s = %d %q, want %d containing %q", tc.method, tc.path, id, status, msg, tc.wantStatus, tc.wantMsg)
			}
		})
	}

	// What the policy does grant: its own new certificate, and a listing
	// of its own leases only.
	env := append(workloadEnv(s), "WARD_CLIENT_CERT="+web.Certificate, "WARD_CLIENT_KEY="+web.Key)
	renewed := parseIssued(t, mustWard(t, s, env, "issue", "x509", "--out", outDir(t, "web2"), "--output", "json"))
	if renewed.SPIFFEID != id {
		t.Errorf("ward issue x509 with a client certificate issued for %s, want %s", renewed.SPIFFEID, id)
	}

	var listed struct {
		Leases []struct {
			ID      string `json:"id"`
			Subject string `json:"subject"`
		} `json:"leases"`
	}
	if err := json.Unmarshal([]byte(mustWard(t, s, env, "lease", "list", "--output", "json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed.Leases) != 2 {
		t.Errorf("ward lease list as %s shows %d leases, want its 2", id, len(listed.Leases))
	}
	for _, l := range listed.Leases {
		if l.Subject != id {
			t.Errorf("ward lease list as %s shows lease %s of %s", id, l.ID, l.Subject)
		}
	}
}

// TestDNSDenyCaseInsensitive denies one DNS name under a wildcard allow.
// DNS names compare case-insensitively (RFC 4343), so the same name in
// other letter case names the same host and must be denied too.
func TestDNSDenyCaseInsensitive(t *testing.T) {
	s := startDev(t)
	const id = "spiffe://ward.test/ns/shop/sa/web"
	policyPath := filepath.Join(s.DataDir(), "policy.csv")
	appendPolicy(t, policyPath, "p, "+id+", dev, dns/*, issue, allow")
	appendPolicy(t, policyPath, "p, "+id+", dev, dns/admin.shop, issue, deny")
	mustWard(t, s, s.Env(), "policy", "reload")

	web := issueJoined(t, s, id, outDir(t, "web"))
	pair, err := tls.LoadX509KeyPair(web.Certificate, web.Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.TLSConfig()
	cfg.Certificates = []tls.Certificate{pair}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}

	for _, name := range []string{"shop.example", "admin.shop", "ADMIN.shop", "Admin.Shop"} {
		status, body := s.DoWith(t, client, "", http.MethodPost, "/v1/issue/x509",
			map[string]any{"csr": string(newCSR(t, id)), "dns_names": []string{name}})
		want := http.StatusForbidden
		if name == "shop.example" {
			want = http.StatusOK
		}
		if status == want {
			continue
		}
		if status != http.StatusOK {
			t.Errorf("POST /v1/issue/x509 as %s with DNS SAN %q = %d %q, want %d", id, name, status, wardtest.ErrorMessage(body), want)
			continue
		}
		var resp struct {
			Certificate string `json:"certificate"`
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			t.Fatal(err)
		}
		cert := parseCertPEM(t, []byte(resp.Certificate))
		t.Errorf("POST /v1/issue/x509 as %s with DNS SAN %q = 200, want 403: the certificate passes VerifyHostname(\"admin.shop\") = %v, so the deny line is bypassed",
			id, name, cert.VerifyHostname("admin.shop"))
	}
}
