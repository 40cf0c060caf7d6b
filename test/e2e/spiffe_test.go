package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// TestSVIDsVerifyWithGoSPIFFE checks ward's X.509-SVID and JWT-SVID with
// go-spiffe, the SPIFFE project's Go library, which enforces the SVID
// specifications (one URI SAN, leaf key usages, ES256 JWTs with a kid).
func TestSVIDsVerifyWithGoSPIFFE(t *testing.T) {
	s := startDev(t)
	const id = "spiffe://ward.test/ns/shop/sa/web"
	td := spiffeid.RequireTrustDomainFromString("ward.test")
	issued := issueJoined(t, s, id, outDir(t, "svid"))

	bundle, err := x509bundle.Load(td, s.CACertPath())
	if err != nil {
		t.Fatal(err)
	}
	svid, err := x509svid.Load(issued.Certificate, issued.Key)
	if err != nil {
		t.Fatalf("x509svid.Load(%s): %v", issued.Certificate, err)
	}
	gotID, _, err := x509svid.Verify(svid.Certificates, bundle)
	if err != nil {
		t.Fatalf("x509svid.Verify: %v", err)
	}
	if gotID.String() != id {
		t.Errorf("x509svid.Verify ID = %s, want %s", gotID, id)
	}

	env := append(workloadEnv(s), "WARD_CLIENT_CERT="+issued.Certificate, "WARD_CLIENT_KEY="+issued.Key)
	token := strings.TrimSpace(mustWard(t, s, env, "issue", "jwt", "--audience", "orders.shop"))
	addSecret("JWT-SVID", []byte(token))

	status, jwks := s.DoWith(t, s.HTTPClient(), "", http.MethodGet, "/v1/jwks", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /v1/jwks = %d, want 200", status)
	}
	jwtBundle, err := jwtbundle.Parse(td, jwks)
	if err != nil {
		t.Fatalf("jwtbundle.Parse(GET /v1/jwks): %v", err)
	}
	jwtSVID, err := jwtsvid.ParseAndValidate(token, jwtBundle, []string{"orders.shop"})
	if err != nil {
		t.Fatalf("jwtsvid.ParseAndValidate: %v", err)
	}
	if jwtSVID.ID.String() != id {
		t.Errorf("JWT-SVID ID = %s, want %s", jwtSVID.ID, id)
	}
	if _, err := jwtsvid.ParseAndValidate(token, jwtBundle, []string{"payments.shop"}); err == nil {
		t.Error("jwtsvid.ParseAndValidate accepted the JWT-SVID for another audience")
	}
}

// TestInvalidSPIFFEIDsRejected requests, as the admin, certificates and
// join tokens whose SPIFFE ID breaks the SPIFFE ID specification: path
// segments may hold only letters, digits, '.', '-' and '_', and no
// percent-encoding. Such an ID fails go-spiffe's parser, and a
// percent-encoded one can slip past a policy line written for the decoded
// form, so ward must reject it.
func TestInvalidSPIFFEIDsRejected(t *testing.T) {
	s := startDev(t)
	ids := []string{
		"spiffe://ward.test/ns/shop/sa/w%65b",
		"spiffe://ward.test/ns/shop/sa/web%2Fadmin",
		"spiffe://ward.test/ns/shop/sa/we b",
		"spiffe://ward.test/ns/shop/sa/web~1",
		"spiffe://ward.test/ns/shop/sa/web!",
		"spiffe://ward.test/ns/shop/sa/web$",
		"spiffe://ward.test/ns/shop/sa/./web",
	}
	for _, id := range ids {
		t.Run(id, func(t *testing.T) {
			if _, err := spiffeid.FromString(id); err == nil {
				t.Fatalf("spiffeid.FromString(%q) accepted it: not an invalid ID", id)
			}
			status, body := s.Do(t, http.MethodPost, "/v1/issue/x509", map[string]string{"csr": string(newCSR(t, "")), "spiffe_id": id})
			if status != http.StatusBadRequest {
				t.Errorf("POST /v1/issue/x509 for %q = %d (%s), want 400", id, status, outcome(body))
			}
			status, body = s.Do(t, http.MethodPost, "/v1/tokens/join", map[string]string{"spiffe_id": id})
			var created struct {
				Token string `json:"token"`
			}
			if json.Unmarshal(body, &created) == nil {
				addSecret("join token for "+id, []byte(created.Token))
			}
			if status != http.StatusBadRequest {
				t.Errorf("POST /v1/tokens/join for %q = %d (%s), want 400", id, status, outcome(body))
			}
		})
	}
}

// outcome summarizes a response body for a failure message: the error, or
// the SPIFFE ID a credential was issued for.
func outcome(body []byte) string {
	var resp struct {
		Error    string `json:"error"`
		SPIFFEID string `json:"spiffe_id"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return string(body)
	}
	if resp.Error != "" {
		return resp.Error
	}
	return "issued for " + resp.SPIFFEID
}
