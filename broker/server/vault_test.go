package server

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"ward.dev/ward/broker/vault/vaulttest"
	"ward.dev/ward/internal/config"
)

// startWithVault starts a ward server against the in-process Vault
// stand-in, with a KV secret and a database role behind it.
func startWithVault(t *testing.T) (*testServer, *vaulttest.Server) {
	t.Helper()
	v := vaulttest.New(t)
	v.PutKV("secret", "payments/stripe", map[string]any{"api_key": "sk_live_stand_in_value"})
	v.AddDatabaseRole("orders", vaulttest.DatabaseRole{DefaultTTL: 3600e9, MaxTTL: 7200e9})
	t.Setenv("WARD_TEST_VAULT_TOKEN", v.RootToken())

	var node yaml.Node
	doc := "address: " + v.Addr() + "\nauth:\n  method: token\n  token: {env: WARD_TEST_VAULT_TOKEN}\n"
	if err := yaml.Unmarshal([]byte(doc), &node); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(c *config.Config) {
		c.Vault = config.Section{Node: node.Content[0]}
		c.Databases = []config.DatabaseRole{{Name: "orders", Issuer: "vault", VaultPath: "database/creds/orders"}}
	})
	return ts, v
}

func TestVaultKVAndDatabaseThroughAPI(t *testing.T) {
	ts, v := startWithVault(t)

	var kv vaultResponse
	if code := ts.call(t, "POST", "/v1/issue/vault", map[string]string{"path": "kv/secret/payments/stripe"}, &kv); code != http.StatusOK {
		t.Fatalf("issue vault kv = %d, want 200", code)
	}
	if kv.Data["api_key"] != "sk_live_stand_in_value" || kv.Version != 1 {
		t.Errorf("kv = %+v, want the stored secret at version 1", kv)
	}

	var db vaultResponse
	if code := ts.call(t, "POST", "/v1/issue/db", map[string]string{"role": "orders", "ttl": "30m"}, &db); code != http.StatusOK {
		t.Fatalf("issue db through vault = %d, want 200", code)
	}
	if db.Username == "" || db.Password == "" {
		t.Fatalf("db credential = %+v, want username and password", db)
	}
	if code := ts.call(t, "POST", "/v1/leases/renew", map[string]string{"lease_id": db.LeaseID, "increment": "1h"}, nil); code != http.StatusOK {
		t.Errorf("renew vault lease = %d, want 200", code)
	}
	if code := ts.call(t, "POST", "/v1/leases/revoke", map[string]string{"lease_id": db.LeaseID}, nil); code != http.StatusOK {
		t.Errorf("revoke vault lease = %d, want 200", code)
	}
	if v.Requests("PUT", "/v1/sys/leases/revoke")+v.Requests("POST", "/v1/sys/leases/revoke") == 0 {
		t.Error("revocation did not reach Vault's sys/leases/revoke")
	}

	audit, _ := os.ReadFile(ts.srv.cfg.Audit.Path)
	for _, secret := range []string{"sk_live_stand_in_value", db.Password, v.RootToken()} {
		if strings.Contains(string(audit), secret) {
			t.Errorf("audit log contains a secret value %q", secret[:4]+"...")
		}
	}
}

func TestVaultSealedIs503AndRecovers(t *testing.T) {
	ts, v := startWithVault(t)
	v.Seal()
	req, _ := http.NewRequest("POST", ts.addr+"/v1/issue/db", strings.NewReader(`{"role":"orders"}`))
	req.Header.Set("Authorization", "Bearer "+ts.token)
	resp, err := ts.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("issue with Vault sealed = %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	v.Unseal()
	if code := ts.call(t, "POST", "/v1/issue/db", map[string]string{"role": "orders"}, nil); code != http.StatusOK {
		t.Errorf("issue after unseal = %d, want 200", code)
	}
}

// startVaultPKIServer starts a Vault stand-in and a ward server whose CA
// backend is the stand-in's PKI engine.
func startVaultPKIServer(t *testing.T) (*vaulttest.Server, *testServer) {
	t.Helper()
	v := vaulttest.New(t)
	t.Setenv("WARD_TEST_VAULT_TOKEN", v.RootToken())
	var node yaml.Node
	doc := "address: " + v.Addr() + "\nauth:\n  method: token\n  token: {env: WARD_TEST_VAULT_TOKEN}\n"
	if err := yaml.Unmarshal([]byte(doc), &node); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(c *config.Config) {
		c.Vault = config.Section{Node: node.Content[0]}
		c.CA = config.CA{Backend: "vault-pki", VaultPKI: config.VaultPKI{Role: "ward"}}
	})
	return v, ts
}

func TestVaultPKIBackendSignsSVIDs(t *testing.T) {
	v, ts := startVaultPKIServer(t)

	var resp x509Response
	if code := ts.call(t, "POST", "/v1/issue/x509", map[string]any{"csr": newCSR(t, ""), "spiffe_id": "spiffe://ward.test/ns/shop/sa/web", "ttl": "10m"}, &resp); code != http.StatusOK {
		t.Fatalf("issue x509 through Vault PKI = %d", code)
	}
	block, _ := pem.Decode([]byte(resp.Certificate))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(resp.Bundle)) {
		t.Fatalf("bundle %q holds no certificate", resp.Bundle)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("certificate does not verify under Vault's chain: %v", err)
	}
	if cert.URIs[0].String() != "spiffe://ward.test/ns/shop/sa/web" {
		t.Errorf("URI SAN = %s", cert.URIs[0])
	}
	if v.Requests("PUT", "/v1/pki/sign/ward")+v.Requests("POST", "/v1/pki/sign/ward") == 0 {
		t.Error("Vault's pki/sign/ward was not called")
	}
	if _, err := ts.srv.leases.Get(context.Background(), resp.LeaseID); err != nil {
		t.Errorf("lease %s: %v", resp.LeaseID, err)
	}
}

// TestVaultPKISANsAndRevocation issues a certificate with DNS and IP SANs
// through Vault's PKI engine, then revokes its lease and checks that Vault
// revoked the certificate too.
func TestVaultPKISANsAndRevocation(t *testing.T) {
	v, ts := startVaultPKIServer(t)

	var resp x509Response
	code := ts.call(t, "POST", "/v1/issue/x509", map[string]any{
		"csr": newCSR(t, ""), "spiffe_id": "spiffe://ward.test/ns/db/sa/pg", "ttl": "10m",
		"dns_names": []string{"db.internal"}, "ip_addresses": []string{"127.0.0.1", "::1"},
	}, &resp)
	if code != http.StatusOK {
		t.Fatalf("issue x509 with SANs through Vault PKI = %d, want 200", code)
	}
	block, _ := pem.Decode([]byte(resp.Certificate))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "db.internal" {
		t.Errorf("DNS SANs = %v, want [db.internal]", cert.DNSNames)
	}
	if got := ipStrings(cert.IPAddresses); !sameSet(got, []string{"127.0.0.1", "::1"}) {
		t.Errorf("IP SANs = %v, want 127.0.0.1 and ::1", got)
	}

	l, err := ts.srv.leases.Get(context.Background(), resp.LeaseID)
	if err != nil {
		t.Fatal(err)
	}
	serial := l.Meta["vault_serial"]
	if serial == "" || v.CertRevoked(serial) {
		t.Fatalf("lease Vault serial = %q, revoked at Vault before the lease = %v", serial, v.CertRevoked(serial))
	}
	if code := ts.call(t, "POST", "/v1/leases/revoke", map[string]string{"lease_id": resp.LeaseID}, nil); code != http.StatusOK {
		t.Fatalf("revoke lease = %d, want 200", code)
	}
	if !v.CertRevoked(serial) {
		t.Errorf("certificate %s not revoked at Vault after its lease was", serial)
	}

	// With Vault sealed the revocation fails and the lease stays active,
	// so that a retry reaches Vault.
	code = ts.call(t, "POST", "/v1/issue/x509", map[string]any{"csr": newCSR(t, ""), "spiffe_id": "spiffe://ward.test/ns/db/sa/pg", "ttl": "10m"}, &resp)
	if code != http.StatusOK {
		t.Fatalf("second issue = %d, want 200", code)
	}
	v.Seal()
	if code := ts.call(t, "POST", "/v1/leases/revoke", map[string]string{"lease_id": resp.LeaseID}, nil); code == http.StatusOK {
		t.Errorf("revoke with Vault sealed = 200, want a failure")
	}
	v.Unseal()
	if code := ts.call(t, "POST", "/v1/leases/revoke", map[string]string{"lease_id": resp.LeaseID}, nil); code != http.StatusOK {
		t.Fatalf("revoke after unseal = %d, want 200", code)
	}
	l, err = ts.srv.leases.Get(context.Background(), resp.LeaseID)
	if err != nil || !v.CertRevoked(l.Meta["vault_serial"]) {
		t.Errorf("second certificate not revoked at Vault after retry (lease error %v)", err)
	}
}

// TestSameSetIgnoresOrderAndCase checks the SAN comparison that guards
// certificates Vault signed.
func TestSameSetIgnoresOrderAndCase(t *testing.T) {
	cases := []struct {
		a, b []string
		want bool
	}{
		{nil, nil, true},
		{[]string{"a", "B"}, []string{"b", "A"}, true},
		{[]string{"a"}, []string{"a", "a"}, false},
		{[]string{"a", "a"}, []string{"a", "b"}, false},
		{[]string{"a"}, nil, false},
	}
	for _, c := range cases {
		if got := sameSet(c.a, c.b); got != c.want {
			t.Errorf("sameSet(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
