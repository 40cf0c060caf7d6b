package server

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"ward.dev/ward/broker/ca"
	"ward.dev/ward/internal/store"
)

// x509Request is the body of POST /v1/issue/x509 and POST /v1/auth/join.
type x509Request struct {
	CSR         string   `json:"csr"`
	TTL         string   `json:"ttl,omitempty"`
	SPIFFEID    string   `json:"spiffe_id,omitempty"`
	DNSNames    []string `json:"dns_names,omitempty"`
	IPAddresses []string `json:"ip_addresses,omitempty"`
	JoinToken   string   `json:"join_token,omitempty"`
}

// x509Response carries the certificate chain (leaf first), the trust bundle
// and the lease.
type x509Response struct {
	SPIFFEID    string    `json:"spiffe_id"`
	Certificate string    `json:"certificate"`
	Chain       []string  `json:"chain"`
	Bundle      string    `json:"bundle"`
	Serial      string    `json:"serial"`
	LeaseID     string    `json:"lease_id"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// maxSANs bounds the DNS and IP SANs of one certificate.
const maxSANs = 32

func (s *Server) handleIssueX509(req *request) (any, *apiError) {
	var body x509Request
	if err := decode(req.r, &body); err != nil {
		return nil, err
	}
	if body.JoinToken != "" {
		return nil, errorf(http.StatusBadRequest, "join_token belongs in POST /v1/auth/join")
	}
	target := body.SPIFFEID
	if target == "" {
		target = req.caller.id
	}
	return s.issueX509(req, target, body)
}

// handleJoin exchanges a one-use join token and a CSR for the first
// certificate of the workload the token is bound to.
func (s *Server) handleJoin(req *request) (any, *apiError) {
	var body x509Request
	if err := decode(req.r, &body); err != nil {
		return nil, err
	}
	req.rec.Object = "join"
	if body.JoinToken == "" {
		return nil, errorf(http.StatusBadRequest, "missing join_token")
	}
	if body.SPIFFEID != "" || len(body.DNSNames) > 0 || len(body.IPAddresses) > 0 {
		return nil, errorf(http.StatusBadRequest, "a join request takes only join_token, csr and ttl: the SPIFFE ID is the one the token is bound to")
	}
	token := []byte(body.JoinToken)
	req.rec.HMACs = map[string]string{"join_token": s.audit.HMAC(token)}
	digest := store.TokenDigest(token)

	ctx := req.r.Context()
	jt, err := s.store.PeekJoinToken(ctx, digest, s.now())
	if errors.Is(err, store.ErrTokenInvalid) {
		return nil, errorf(http.StatusUnauthorized, "join token invalid, expired or already used")
	}
	if err != nil {
		return nil, internal("join token lookup", err)
	}
	req.caller = caller{id: jt.SPIFFEID, method: "join"}
	req.rec.Caller = jt.SPIFFEID

	// Validate and authorize the whole request before the token is spent,
	// so a workload can retry with the same token after a rejection (a bad
	// CSR, or a policy that does not allow it yet).
	plan, aerr := s.prepareX509(req, jt.SPIFFEID, body)
	if aerr != nil {
		return nil, aerr
	}
	if _, err := s.store.ConsumeJoinToken(ctx, digest, s.now()); errors.Is(err, store.ErrTokenInvalid) {
		return nil, errorf(http.StatusUnauthorized, "join token invalid, expired or already used")
	} else if err != nil {
		return nil, internal("join token use", err)
	}
	return s.signX509(req, plan)
}

// x509Plan is a validated and authorized certificate request, ready to sign.
type x509Plan struct {
	start    time.Time
	id       *url.URL
	csr      *x509.CertificateRequest
	dnsNames []string
	ips      []net.IP
	ttl      time.Duration
}

// issueX509 validates, authorizes and signs a certificate request.
func (s *Server) issueX509(req *request, target string, body x509Request) (any, *apiError) {
	plan, err := s.prepareX509(req, target, body)
	if err != nil {
		return nil, err
	}
	return s.signX509(req, plan)
}

// prepareX509 checks everything about a request that can fail before
// anything is spent or signed: the SPIFFE ID, TTL, CSR, SANs and policy.
func (s *Server) prepareX509(req *request, target string, body x509Request) (*x509Plan, *apiError) {
	plan := &x509Plan{start: time.Now()}
	req.rec.Object = "x509/" + target
	id, msg := s.parseSPIFFEID(target)
	if id == nil {
		return nil, errorf(http.StatusBadRequest, "%s", msg)
	}
	plan.id = id
	ttl, aerr := parseTTL(body.TTL, s.cfg.TTL.Default.Duration, s.cfg.TTL.Max.Duration)
	if aerr != nil {
		return nil, aerr
	}
	plan.ttl = ttl
	if strings.TrimSpace(body.CSR) == "" {
		return nil, errorf(http.StatusBadRequest, "missing csr: send a PEM certificate signing request")
	}
	csr, err := ca.ParseCSR([]byte(body.CSR))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "%v", err)
	}
	if len(csr.URIs) == 1 && csr.URIs[0].String() != id.String() {
		return nil, errorf(http.StatusBadRequest, "invalid CSR: URI SAN %s does not match the SPIFFE ID %s", quote(csr.URIs[0].String()), id)
	}
	plan.csr = csr

	// DNS names compare case-insensitively (RFC 4343), so they are checked
	// against policy and written into the certificate in lower case. A deny
	// on dns/admin.shop must also stop ADMIN.shop.
	for _, name := range append(append([]string(nil), csr.DNSNames...), body.DNSNames...) {
		plan.dnsNames = append(plan.dnsNames, strings.ToLower(name))
	}
	plan.ips = append([]net.IP(nil), csr.IPAddresses...)
	for _, raw := range body.IPAddresses {
		ip := net.ParseIP(raw)
		if ip == nil {
			return nil, errorf(http.StatusBadRequest, "invalid IP address %s", quote(raw))
		}
		plan.ips = append(plan.ips, ip)
	}
	if n := len(plan.dnsNames) + len(plan.ips); n > maxSANs {
		return nil, errorf(http.StatusBadRequest, "%d DNS and IP SANs requested, at most %d allowed", n, maxSANs)
	}

	// Every name in the certificate is a separate grant: the SPIFFE ID, and
	// each DNS name and IP address.
	if err := s.require(req, "x509/"+id.String(), "issue"); err != nil {
		return nil, err
	}
	for _, name := range plan.dnsNames {
		if !validDNSName(name) {
			return nil, errorf(http.StatusBadRequest, "invalid DNS name %s", quote(name))
		}
		if err := s.require(req, "dns/"+name, "issue"); err != nil {
			return nil, err
		}
	}
	for _, ip := range plan.ips {
		if err := s.require(req, "ip/"+ip.String(), "issue"); err != nil {
			return nil, err
		}
	}
	return plan, nil
}

// signX509 signs a prepared request and records its lease.
func (s *Server) signX509(req *request, plan *x509Plan) (any, *apiError) {
	if s.cfg.CA.Backend == "vault-pki" {
		return s.signX509Vault(req, plan)
	}
	id := plan.id
	issued, err := s.ca.Sign(ca.Request{PublicKey: plan.csr.PublicKey, SPIFFEID: id, DNSNames: plan.dnsNames, IPs: plan.ips, TTL: plan.ttl})
	if err != nil {
		return nil, signFailure("certificate signing", err)
	}
	leaseID, err := newLeaseID("x509/" + id.String())
	if err != nil {
		return nil, internal("lease id", err)
	}
	serial := ca.SerialHex(issued.Cert)
	l := store.Lease{
		ID: leaseID, Kind: "x509", Object: "x509/" + id.String(), Subject: id.String(), Serial: serial,
		IssuedAt: issued.Cert.NotBefore, ExpiresAt: issued.Cert.NotAfter, MaxExpiresAt: issued.Cert.NotAfter,
	}
	if err := s.createLease(req.r.Context(), l); err != nil {
		return nil, err
	}
	req.rec.LeaseID = leaseID
	s.met.issued("x509", time.Since(plan.start))

	leafPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issued.DER}))
	return x509Response{
		SPIFFEID:    id.String(),
		Certificate: leafPEM,
		Chain:       []string{leafPEM},
		Bundle:      string(s.caPEM),
		Serial:      serial,
		LeaseID:     leaseID,
		ExpiresAt:   issued.Cert.NotAfter,
	}, nil
}

// createLease writes the lease durably; without it, no credential leaves.
func (s *Server) createLease(ctx context.Context, l store.Lease) *apiError {
	if err := s.leases.Create(ctx, l); err != nil {
		return unavailable("lease store unavailable, no credential issued", err)
	}
	s.met.leaseCreated()
	return nil
}

type jwtRequest struct {
	Audience []string `json:"audience"`
	TTL      string   `json:"ttl,omitempty"`
	SPIFFEID string   `json:"spiffe_id,omitempty"`
}

type jwtResponse struct {
	SPIFFEID  string    `json:"spiffe_id"`
	Token     string    `json:"token"`
	LeaseID   string    `json:"lease_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *Server) handleIssueJWT(req *request) (any, *apiError) {
	start := time.Now()
	var body jwtRequest
	if err := decode(req.r, &body); err != nil {
		return nil, err
	}
	target := body.SPIFFEID
	if target == "" {
		target = req.caller.id
	}
	req.rec.Object = "jwt/" + target
	id, msg := s.parseSPIFFEID(target)
	if id == nil {
		return nil, errorf(http.StatusBadRequest, "%s", msg)
	}
	if len(body.Audience) == 0 {
		return nil, errorf(http.StatusBadRequest, "missing audience: a JWT-SVID needs at least one")
	}
	for _, aud := range body.Audience {
		if aud == "" || len(aud) > 256 {
			return nil, errorf(http.StatusBadRequest, "invalid audience %s: must be 1 to 256 characters", quote(aud))
		}
	}
	ttl, aerr := parseTTL(body.TTL, minDuration(s.cfg.TTL.Default.Duration, 5*time.Minute), s.cfg.TTL.Max.Duration)
	if aerr != nil {
		return nil, aerr
	}
	if err := s.require(req, "jwt/"+id.String(), "issue"); err != nil {
		return nil, err
	}

	leaseID, err := newLeaseID("jwt/" + id.String())
	if err != nil {
		return nil, internal("lease id", err)
	}
	jti := leaseID[strings.LastIndexByte(leaseID, '/')+1:]
	token, expires, err := s.jwt.Sign(id.String(), body.Audience, ttl, jti)
	if err != nil {
		return nil, signFailure("JWT signing", err)
	}
	l := store.Lease{
		ID: leaseID, Kind: "jwt", Object: "jwt/" + id.String(), Subject: id.String(),
		IssuedAt: s.now(), ExpiresAt: expires, MaxExpiresAt: expires,
	}
	if err := s.createLease(req.r.Context(), l); err != nil {
		return nil, err
	}
	req.rec.LeaseID = leaseID
	req.rec.HMACs = map[string]string{"jwt": s.audit.HMAC([]byte(token))}
	s.met.issued("jwt", time.Since(start))
	return jwtResponse{SPIFFEID: id.String(), Token: token, LeaseID: leaseID, ExpiresAt: expires}, nil
}

type joinTokenRequest struct {
	SPIFFEID string `json:"spiffe_id"`
	TTL      string `json:"ttl,omitempty"`
}

type joinTokenResponse struct {
	Token     string    `json:"token"`
	SPIFFEID  string    `json:"spiffe_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *Server) handleCreateJoinToken(req *request) (any, *apiError) {
	var body joinTokenRequest
	if err := decode(req.r, &body); err != nil {
		return nil, err
	}
	req.rec.Object = "token/" + body.SPIFFEID
	id, msg := s.parseSPIFFEID(body.SPIFFEID)
	if id == nil {
		return nil, errorf(http.StatusBadRequest, "%s", msg)
	}
	ttl, aerr := parseTTL(body.TTL, s.cfg.TTL.JoinToken.Duration, s.cfg.TTL.Max.Duration)
	if aerr != nil {
		return nil, aerr
	}
	if err := s.require(req, "token/"+id.String(), "issue"); err != nil {
		return nil, err
	}

	token, err := randomToken(joinTokenPrefix)
	if err != nil {
		return nil, internal("join token generation", err)
	}
	now := s.now()
	jt := store.JoinToken{SPIFFEID: id.String(), CreatedBy: req.caller.id, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := s.store.InsertJoinToken(req.r.Context(), store.TokenDigest([]byte(token)), jt); err != nil {
		return nil, unavailable("store unavailable, no token created", err)
	}
	req.rec.HMACs = map[string]string{"join_token": s.audit.HMAC([]byte(token))}
	return joinTokenResponse{Token: token, SPIFFEID: id.String(), ExpiresAt: jt.ExpiresAt}, nil
}

func (s *Server) handleCRL(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	revoked, err := s.store.RevokedSerials(r.Context(), now)
	if err != nil {
		s.writeError(w, r, unavailable("store unavailable", err))
		return
	}
	der, err := s.ca.CRL(revoked, s.nextCRLNumber(now), time.Hour)
	if err != nil {
		s.writeError(w, r, internal("CRL signing", err))
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	_, _ = w.Write(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
}

// newLeaseID returns object/<random>, so that leases of one object share a
// prefix and can be revoked together.
func newLeaseID(object string) (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return object + "/" + encodeB64(b), nil
}

func validDNSName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func minDuration(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

// nextCRLNumber returns a CRL number larger than any this process issued
// before: RFC 5280 (5.2.3) requires it to increase. It starts from the
// clock in nanoseconds, so numbers also increase across restarts.
func (s *Server) nextCRLNumber(now time.Time) int64 {
	for {
		last := s.crlNumber.Load()
		next := max(now.UnixNano(), last+1)
		if s.crlNumber.CompareAndSwap(last, next) {
			return next
		}
	}
}
