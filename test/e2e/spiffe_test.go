package e2e

import (
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
