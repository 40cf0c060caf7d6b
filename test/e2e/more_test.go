package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestIssueX509KeyTypes issues one certificate per --key-type and has
// openssl verify each. The first goes through --join-token-file.
func TestIssueX509KeyTypes(t *testing.T) {
	s := startDev(t)

	cases := []struct {
		keyType string
		wantAlg string // as openssl x509 -text prints the public key algorithm
	}{
		{"ec-p256", "id-ecPublicKey"},
		{"ec-p384", "id-ecPublicKey"},
		{"ed25519", "ED25519"},
		{"rsa-2048", "rsaEncryption"},
	}
	for i, tc := range cases {
		t.Run(tc.keyType, func(t *testing.T) {
			id := "spiffe://ward.test/ns/shop/sa/" + tc.keyType
			dir := outDir(t, "svid")
			var out string
			if i == 0 {
				tokenFile := filepath.Join(t.TempDir(), "join.token")
				if err := os.WriteFile(tokenFile, []byte(createJoinToken(t, s, id, "10m")+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				out = mustWard(t, s, workloadEnv(s), "issue", "x509", "--join-token-file", tokenFile,
					"--key-type", tc.keyType, "--out", dir, "--output", "json")
			} else {
				out = mustWard(t, s, s.Env(), "issue", "x509", "--spiffe-id", id,
					"--key-type", tc.keyType, "--out", dir, "--output", "json")
			}
			issued := parseIssued(t, out)

			if verify := mustTool(t, dir, "openssl", "verify", "-CAfile", "bundle.pem", "cert.pem"); strings.TrimSpace(verify) != "cert.pem: OK" {
				t.Errorf("openssl verify printed %q, want \"cert.pem: OK\"", verify)
			}
			text := mustTool(t, dir, "openssl", "x509", "-in", "cert.pem", "-noout", "-text")
			if !strings.Contains(text, "Public Key Algorithm: "+tc.wantAlg) {
				t.Errorf("openssl x509 -text of the %s certificate lacks \"Public Key Algorithm: %s\"", tc.keyType, tc.wantAlg)
			}
			keyPub := mustTool(t, dir, "openssl", "pkey", "-in", "key.pem", "-pubout")
			certPub := mustTool(t, dir, "openssl", "x509", "-in", "cert.pem", "-noout", "-pubkey")
			if keyPub != certPub {
				t.Errorf("%s: key.pem and cert.pem hold different public keys", tc.keyType)
			}
			if issued.SPIFFEID != id {
				t.Errorf("issued SPIFFE ID = %s, want %s", issued.SPIFFEID, id)
			}
		})
	}
}

// TestAPIRefusesTLS12 connects to the API with TLS 1.2 at most, which the
// listener does not accept.
func TestAPIRefusesTLS12(t *testing.T) {
	s := startDev(t)
	dir := t.TempDir()

	_, stderr, code := runTool(t, dir, "curl", "-sS", "--tlsv1.2", "--tls-max", "1.2", "--cacert", s.CACertPath(), s.Addr()+"/v1/health")
	if code == 0 {
		t.Errorf("curl --tls-max 1.2 GET /v1/health: exit 0, want the handshake rejected")
	}
	t.Logf("TLS 1.2: curl exit %d: %s", code, strings.TrimSpace(stderr))

	body, stderr, code := runTool(t, dir, "curl", "-sS", "--tlsv1.3", "--cacert", s.CACertPath(), s.Addr()+"/v1/health")
	if code != 0 || !strings.Contains(body, `"ok"`) {
		t.Errorf("curl --tlsv1.3 GET /v1/health: exit %d, body %q, stderr %q; want 0 and status ok", code, body, stderr)
	}
}

// TestRevokeByPrefix revokes every certificate of a namespace with one
// command and finds each serial in the CRL.
func TestRevokeByPrefix(t *testing.T) {
	s := startDev(t)
	var serials []string
	var first x509Issued
	for i, name := range []string{"a", "b", "c"} {
		issued := issueAsAdmin(t, s, "spiffe://ward.test/ns/shop/sa/"+name, outDir(t, name))
		serials = append(serials, issued.Serial)
		if i == 0 {
			first = issued
		}
	}
	outside := issueAsAdmin(t, s, "spiffe://ward.test/ns/other/sa/outside", outDir(t, "outside"))

	out := mustWard(t, s, s.Env(), "lease", "revoke", "--prefix", "x509/spiffe://ward.test/ns/shop/")
	if strings.TrimSpace(out) != "revoked 3 lease(s)" {
		t.Errorf("ward lease revoke --prefix printed %q, want \"revoked 3 lease(s)\"", out)
	}

	status, body := s.DoWith(t, s.HTTPClient(), "", http.MethodGet, "/v1/crl", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /v1/crl = %d, want 200", status)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "crl.pem"), body, 0o644); err != nil {
		t.Fatal(err)
	}
	text := strings.ToLower(mustTool(t, dir, "openssl", "crl", "-in", "crl.pem", "-noout", "-text"))
	compact := strings.NewReplacer(":", "", " ", "", "\n", "").Replace(text)
	for _, serial := range serials {
		if !strings.Contains(compact, "serialnumber"+strings.TrimLeft(serial, "0")) && !strings.Contains(compact, "serialnumber0"+serial) {
			t.Errorf("openssl crl -text does not list revoked serial %s", serial)
		}
	}
	if strings.Contains(compact, outside.Serial) {
		t.Errorf("CRL lists serial %s outside the revoked prefix", outside.Serial)
	}

	// A certificate revoked by prefix no longer authenticates.
	out = mustTool(t, dir, "curl", "-sS", "--tlsv1.3", "--cacert", s.CACertPath(),
		"--cert", first.Certificate, "--key", first.Key, "-w", "\n%{http_code}", s.Addr()+"/v1/leases")
	if _, status := curlStatus(t, out); status != http.StatusUnauthorized {
		t.Errorf("curl GET /v1/leases with a certificate revoked by prefix = %d, want 401", status)
	}

	leases := listLeases(t, s, "x509/")
	if l := leases[outside.LeaseID]; l.State != "active" {
		t.Errorf("lease %s outside the prefix has state %q, want active", outside.LeaseID, l.State)
	}
}

// TestPolicyExplicitDenyWins adds a deny line for one shop workload, which
// the shop-wide allow line no longer covers.
func TestPolicyExplicitDenyWins(t *testing.T) {
	s := startDev(t)
	const id = "spiffe://ward.test/ns/shop/sa/web"
	web := issueJoined(t, s, id, outDir(t, "web"))
	env := append(workloadEnv(s), "WARD_CLIENT_CERT="+web.Certificate, "WARD_CLIENT_KEY="+web.Key)

	appendPolicy(t, filepath.Join(s.DataDir(), "policy.csv"), "p, "+id+", dev, x509/self, issue, deny")
	mustWard(t, s, s.Env(), "policy", "reload")

	_, stderr, code := s.RunEnv(t, env, "issue", "x509", "--out", outDir(t, "again"))
	if code != 1 || !strings.Contains(stderr, "may not issue") {
		t.Errorf("ward issue x509 as %s after a deny line: exit %d, stderr %q; want 1 and \"may not issue\"", id, code, stderr)
	}
	expectDecision(t, s, id, "deny")
	expectDecision(t, s, "spiffe://ward.test/ns/shop/sa/orders", "allow")
}

// TestRestartKeepsJoinTokens creates a join token, restarts the server and
// exchanges the token afterwards.
func TestRestartKeepsJoinTokens(t *testing.T) {
	s := startDev(t)
	const id = "spiffe://ward.test/ns/shop/sa/web"
	token := createJoinToken(t, s, id, "10m")

	s.Restart()
	out := mustWard(t, s, workloadEnv(s), "issue", "x509", "--join-token", token, "--out", outDir(t, "svid"), "--output", "json")
	if issued := parseIssued(t, out); issued.SPIFFEID != id {
		t.Errorf("issued for %s after restart, want %s", issued.SPIFFEID, id)
	}
}

// TestLeaseExpires issues a certificate with a 1s TTL and waits for the
// sweeper to mark its lease expired.
func TestLeaseExpires(t *testing.T) {
	s := startDev(t)
	const id = "spiffe://ward.test/ns/shop/sa/short"
	issued := issueAsAdmin(t, s, id, outDir(t, "svid"), "--ttl", "1s")

	state := func() string {
		status, body := s.Do(t, http.MethodGet, "/v1/leases?prefix=x509/"+id+"/", nil)
		if status != http.StatusOK {
			t.Fatalf("GET /v1/leases = %d %s", status, body)
		}
		var resp struct {
			Leases []leaseView `json:"leases"`
		}
		if err := json.Unmarshal(body, &resp); err != nil || len(resp.Leases) != 1 {
			t.Fatalf("GET /v1/leases for %s = %s (%v), want one lease", id, body, err)
		}
		return resp.Leases[0].State
	}
	if !waitFor(10*time.Second, func() bool { return state() == "expired" }) {
		t.Fatalf("lease %s state = %s 10s after a 1s TTL, want expired", issued.LeaseID, state())
	}

	_, stderr, code := s.Run(t, "lease", "revoke", issued.LeaseID)
	if code != 1 {
		t.Errorf("ward lease revoke of an expired lease: exit %d, stderr %q; want 1", code, stderr)
	}

	// The expired certificate no longer passes the API's TLS handshake.
	_, stderr, code = runTool(t, t.TempDir(), "curl", "-sS", "--tlsv1.3", "--max-time", "10", "--cacert", s.CACertPath(),
		"--cert", issued.Certificate, "--key", issued.Key, s.Addr()+"/v1/leases")
	if code == 0 {
		t.Errorf("curl GET /v1/leases with an expired client certificate: exit 0, want the TLS handshake rejected")
	}
	t.Logf("expired client certificate: curl exit %d: %s", code, strings.TrimSpace(stderr))
}

// TestRevokePrefixIsLiteral revokes by a prefix holding '_' and '%', which
// are wildcards in SQL LIKE: only leases whose id starts with exactly that
// text may be revoked or listed.
func TestRevokePrefixIsLiteral(t *testing.T) {
	s := startDev(t)
	target := issueAsAdmin(t, s, "spiffe://ward.test/ns/team_a/sa/x", outDir(t, "target"))
	lookalikes := []x509Issued{
		issueAsAdmin(t, s, "spiffe://ward.test/ns/team-a/sa/x", outDir(t, "dash")),
		issueAsAdmin(t, s, "spiffe://ward.test/ns/teamXa/sa/x", outDir(t, "letter")),
	}

	listed := listLeases(t, s, "x509/spiffe://ward.test/ns/team_a/")
	if len(listed) != 1 {
		t.Errorf("GET /v1/leases?prefix=x509/spiffe://ward.test/ns/team_a/ lists %d leases, want 1", len(listed))
	}

	out := mustWard(t, s, s.Env(), "lease", "revoke", "--prefix", "x509/spiffe://ward.test/ns/team_a/")
	if strings.TrimSpace(out) != "revoked 1 lease(s)" {
		t.Errorf("ward lease revoke --prefix .../team_a/ printed %q, want \"revoked 1 lease(s)\"", out)
	}
	out = mustWard(t, s, s.Env(), "lease", "revoke", "--prefix", "x509/spiffe://ward.test/ns/team%")
	if strings.TrimSpace(out) != "revoked 0 lease(s)" {
		t.Errorf("ward lease revoke --prefix .../team%% printed %q, want \"revoked 0 lease(s)\"", out)
	}

	leases := listLeases(t, s, "x509/")
	if l := leases[target.LeaseID]; l.State != "revoked" {
		t.Errorf("lease %s state %q, want revoked", target.LeaseID, l.State)
	}
	for _, other := range lookalikes {
		if l := leases[other.LeaseID]; l.State != "active" {
			t.Errorf("lease %s state %q after revoking prefix .../team_a/, want active", other.LeaseID, l.State)
		}
	}
}
