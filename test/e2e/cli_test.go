package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestJWTSVIDVerifiesAgainstJWKS gets a JWT-SVID with `ward issue jwt`,
// authenticated by a ward client certificate, and verifies it against
// GET /v1/jwks with the standard library alone.
func TestJWTSVIDVerifiesAgainstJWKS(t *testing.T) {
	s := startDev(t)
	const id = "spiffe://ward.test/ns/shop/sa/web"
	issued := issueJoined(t, s, id, outDir(t, "svid"))
	env := append(workloadEnv(s), "WARD_CLIENT_CERT="+issued.Certificate, "WARD_CLIENT_KEY="+issued.Key)

	token := strings.TrimSpace(mustWard(t, s, env, "issue", "jwt", "--audience", "orders.shop", "--ttl", "5m"))
	addSecret("JWT-SVID", []byte(token))
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("ward issue jwt printed %d dot-separated parts, want 3", len(parts))
	}

	var header struct {
		Alg, Typ, Kid string
	}
	decodeSegment(t, parts[0], &header)
	if header.Alg != "ES256" || header.Kid == "" {
		t.Errorf("JWT header alg %q kid %q, want ES256 and a key id", header.Alg, header.Kid)
	}

	status, body := s.DoWith(t, s.HTTPClient(), "", http.MethodGet, "/v1/jwks", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /v1/jwks = %d %s, want 200", status, body)
	}
	var jwks struct {
		Keys []struct {
			Kty, Crv, X, Y, Kid, Alg string
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &jwks); err != nil {
		t.Fatal(err)
	}
	var pub *ecdsa.PublicKey
	for _, k := range jwks.Keys {
		if k.Kid != header.Kid {
			continue
		}
		if k.Kty != "EC" || k.Crv != "P-256" {
			t.Fatalf("JWK %s: kty %s crv %s, want EC P-256", k.Kid, k.Kty, k.Crv)
		}
		point := append([]byte{4}, append(decodeB64(t, k.X), decodeB64(t, k.Y)...)...)
		var err error
		if pub, err = ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point); err != nil {
			t.Fatalf("JWK %s: %v", k.Kid, err)
		}
	}
	if pub == nil {
		t.Fatalf("GET /v1/jwks has no key with kid %q: %s", header.Kid, body)
	}

	verify := func(signingInput, sig string) bool {
		raw := decodeB64(t, sig)
		if len(raw) != 64 {
			return false
		}
		digest := sha256.Sum256([]byte(signingInput))
		return ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:]))
	}
	if !verify(parts[0]+"."+parts[1], parts[2]) {
		t.Error("JWT-SVID signature does not verify against the JWKS key")
	}

	var claims struct {
		Sub string   `json:"sub"`
		Aud []string `json:"aud"`
		Exp int64    `json:"exp"`
		Iat int64    `json:"iat"`
	}
	decodeSegment(t, parts[1], &claims)
	if claims.Sub != id || len(claims.Aud) != 1 || claims.Aud[0] != "orders.shop" {
		t.Errorf("JWT claims sub %q aud %v, want %s and [orders.shop]", claims.Sub, claims.Aud, id)
	}
	if lifetime := claims.Exp - claims.Iat; lifetime <= 0 || lifetime > 300 {
		t.Errorf("JWT exp-iat = %ds, want 1 to 300", lifetime)
	}
	if time.Unix(claims.Exp, 0).Before(time.Now()) {
		t.Errorf("JWT exp %d is in the past", claims.Exp)
	}

	// A changed claim must not verify with the same signature.
	forged := strings.Replace(string(decodeB64(t, parts[1])), "orders.shop", "payments.shop", 1)
	if verify(parts[0]+"."+base64.RawURLEncoding.EncodeToString([]byte(forged)), parts[2]) {
		t.Error("JWT with a changed audience verifies with the original signature")
	}
}

func decodeB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64url %q: %v", s, err)
	}
	return b
}

func decodeSegment(t *testing.T, segment string, v any) {
	t.Helper()
	if err := json.Unmarshal(decodeB64(t, segment), v); err != nil {
		t.Fatalf("JWT segment %q: %v", segment, err)
	}
}

// TestMetricsRequireAuth reads /metrics as the admin and as a workload.
func TestMetricsRequireAuth(t *testing.T) {
	s := startDev(t)
	issued := issueJoined(t, s, "spiffe://ward.test/ns/shop/sa/web", outDir(t, "svid"))
	issueAsAdmin(t, s, "spiffe://ward.test/ns/shop/sa/orders", outDir(t, "orders"))

	if status, body := s.DoWith(t, s.HTTPClient(), "", http.MethodGet, "/metrics", nil); status != http.StatusUnauthorized {
		t.Errorf("GET /metrics without credentials = %d %s, want 401", status, body)
	}

	out := mustTool(t, t.TempDir(), "curl", "-sS", "--tlsv1.3", "--cacert", s.CACertPath(),
		"--cert", issued.Certificate, "--key", issued.Key, "-w", "\n%{http_code}", s.Addr()+"/metrics")
	if _, status := curlStatus(t, out); status != http.StatusForbidden {
		t.Errorf("curl GET /metrics with a workload certificate = %d, want 403", status)
	}

	out = mustTool(t, t.TempDir(), "curl", "-sS", "--tlsv1.3", "--cacert", s.CACertPath(),
		"-H", "@"+bearerHeaderFile(t, s), "-w", "\n%{http_code}", s.Addr()+"/metrics")
	body, status := curlStatus(t, out)
	if status != http.StatusOK {
		t.Fatalf("curl GET /metrics as the admin = %d, want 200", status)
	}
	m := regexp.MustCompile(`(?m)^ward_credentials_issued_total\{kind="x509"\} (\d+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("GET /metrics has no ward_credentials_issued_total{kind=\"x509\"} sample:\n%s", body)
	}
	if n, _ := strconv.Atoi(m[1]); n != 2 {
		t.Errorf("ward_credentials_issued_total{kind=\"x509\"} = %d, want 2", n)
	}
}

// TestLeaseRenewX509NotRenewable renews a certificate lease, which ward
// rejects: certificates are reissued, not extended.
func TestLeaseRenewX509NotRenewable(t *testing.T) {
	s := startDev(t)
	issued := issueJoined(t, s, "spiffe://ward.test/ns/shop/sa/web", outDir(t, "svid"))

	_, stderr, code := s.Run(t, "lease", "renew", issued.LeaseID, "--increment", "10m")
	if code != 1 || !strings.Contains(stderr, "not renewable") {
		t.Errorf("ward lease renew %s: exit %d, stderr %q; want 1 and \"not renewable\"", issued.LeaseID, code, stderr)
	}
}

// TestCLIExitCodes checks the exit code contract: 0 success, 1 refused or
// failed with one line on stderr, 2 bad usage.
func TestCLIExitCodes(t *testing.T) {
	s := startDev(t)
	issued := issueJoined(t, s, "spiffe://ward.test/ns/shop/sa/web", outDir(t, "svid"))
	const other = "spiffe://ward.test/ns/other/sa/x"

	cases := []struct {
		name string
		args []string
		want int
	}{
		{"version", []string{"version"}, 0},
		{"lease list", []string{"lease", "list"}, 0},
		{"policy check allow", []string{"policy", "check", issued.SPIFFEID, "dev", "x509/" + issued.SPIFFEID, "issue"}, 0},
		{"policy check deny", []string{"policy", "check", other, "dev", "x509/" + other, "issue"}, 1},
		{"renew x509 lease", []string{"lease", "renew", issued.LeaseID}, 1},
		{"revoke unknown lease", []string{"lease", "revoke", "x509/" + other + "/none"}, 1},
		{"invalid join token", []string{"issue", "x509", "--join-token", "wardjoin.invalid", "--out", outDir(t, "bad")}, 1},
		{"unknown command", []string{"no-such-command"}, 2},
		{"unknown flag", []string{"issue", "x509", "--no-such-flag"}, 2},
		{"unknown flag on version", []string{"version", "--no-such-flag"}, 2},
		{"missing spiffe id", []string{"token", "create"}, 2},
		{"missing out", []string{"issue", "x509", "--spiffe-id", issued.SPIFFEID}, 2},
		{"revoke without lease", []string{"lease", "revoke"}, 2},
		{"policy check arity", []string{"policy", "check", "a", "b"}, 2},
		{"invalid output format", []string{"lease", "list", "--output", "yaml"}, 2},
		{"serve without mode", []string{"serve"}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := s.Run(t, tc.args...)
			if code != tc.want {
				t.Errorf("ward %s: exit %d (stderr %q), want %d", strings.Join(tc.args, " "), code, stderr, tc.want)
			}
			// policy check prints its deny on stdout and nothing on stderr.
			if code == 0 || tc.name == "policy check deny" {
				return
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "ward: ") {
				t.Errorf("ward %s stderr = %q, want one line starting with \"ward: \"", strings.Join(tc.args, " "), stderr)
			}
		})
	}

	// Without WARD_CACERT the CLI falls back to the system roots, which do
	// not hold ward's CA: the call must fail verification, not skip it.
	var noCA []string
	for _, kv := range s.Env() {
		if !strings.HasPrefix(kv, "WARD_CACERT=") {
			noCA = append(noCA, kv)
		}
	}
	_, stderr, code := s.RunEnv(t, noCA, "lease", "list")
	if code != 1 || !strings.Contains(stderr, "certificate") {
		t.Errorf("ward lease list without WARD_CACERT: exit %d, stderr %q; want 1 and a certificate verification error", code, stderr)
	}
}

// TestCLIHelpHasExamples runs --help on every credential command: each
// exits 0 and shows an example.
func TestCLIHelpHasExamples(t *testing.T) {
	s := startDev(t)
	commands := [][]string{
		{"serve"}, {"version"}, {"token", "create"},
		{"issue", "x509"}, {"issue", "jwt"},
		{"lease", "list"}, {"lease", "renew"}, {"lease", "revoke"},
		{"policy", "check"}, {"policy", "lint"}, {"policy", "reload"},
	}
	for _, command := range commands {
		t.Run(strings.Join(command, " "), func(t *testing.T) {
			stdout, stderr, code := s.Run(t, append(command, "--help")...)
			if code != 0 {
				t.Errorf("ward %s --help: exit %d, stderr %q, want 0", strings.Join(command, " "), code, stderr)
			}
			if !strings.Contains(stdout, "Examples:") {
				t.Errorf("ward %s --help shows no Examples section:\n%s", strings.Join(command, " "), stdout)
			}
		})
	}
}

// TestCLIJSONOutput checks that --output json prints one valid JSON
// document with the expected fields.
func TestCLIJSONOutput(t *testing.T) {
	s := startDev(t)
	const id = "spiffe://ward.test/ns/shop/sa/web"

	var token struct {
		Token     string    `json:"token"`
		SPIFFEID  string    `json:"spiffe_id"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	decodeJSON(t, mustWard(t, s, s.Env(), "token", "create", "--spiffe-id", id, "--ttl", "10m", "--output", "json"), &token)
	addSecret("join token for "+id, []byte(token.Token))
	if token.SPIFFEID != id || !strings.HasPrefix(token.Token, "wardjoin.") {
		t.Errorf("token create --output json: spiffe_id %q, token prefix ok %v; want %s and wardjoin.", token.SPIFFEID, strings.HasPrefix(token.Token, "wardjoin."), id)
	}
	if left := time.Until(token.ExpiresAt); left <= 9*time.Minute || left > 10*time.Minute {
		t.Errorf("token create --ttl 10m: expires_at in %s, want about 10m", left)
	}

	var jwt struct {
		SPIFFEID string `json:"spiffe_id"`
		Token    string `json:"token"`
		LeaseID  string `json:"lease_id"`
	}
	decodeJSON(t, mustWard(t, s, s.Env(), "issue", "jwt", "--audience", "a", "--spiffe-id", id, "--output", "json"), &jwt)
	addSecret("JWT-SVID", []byte(jwt.Token))
	if jwt.SPIFFEID != id || !strings.HasPrefix(jwt.LeaseID, "jwt/"+id+"/") {
		t.Errorf("issue jwt --output json: spiffe_id %q lease_id %q, want %s and a jwt/ lease", jwt.SPIFFEID, jwt.LeaseID, id)
	}

	var leases struct {
		Leases []leaseView `json:"leases"`
	}
	decodeJSON(t, mustWard(t, s, s.Env(), "lease", "list", "--output", "json"), &leases)
	if len(leases.Leases) != 1 || leases.Leases[0].ID != jwt.LeaseID {
		t.Errorf("lease list --output json = %+v, want the one JWT lease %s", leases.Leases, jwt.LeaseID)
	}

	var decision struct {
		Decision string `json:"decision"`
		Rule     string `json:"rule"`
	}
	decodeJSON(t, mustWard(t, s, s.Env(), "policy", "check", id, "dev", "x509/"+id, "issue", "--output", "json"), &decision)
	if decision.Decision != "allow" || decision.Rule == "" {
		t.Errorf("policy check --output json = %+v, want allow with the deciding rule", decision)
	}
}

func decodeJSON(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("output %q is not the expected JSON: %v", out, err)
	}
	if !json.Valid([]byte(out)) {
		t.Fatalf("output %q is not one JSON document", out)
	}
}
