package server

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"time"

	"ward.dev/ward/broker/ca"
	"ward.dev/ward/broker/vault"
	"ward.dev/ward/internal/store"
)

// signX509Vault has Vault's PKI engine sign a prepared request
// (ca.backend vault-pki). Policy, TTL and CSR checks are ward's, as with the
// local CA; the lease is ward's too. The trust bundle returned is Vault's
// issuing chain.
//
// NOTE: revoking such a lease stops the certificate from authenticating to
// ward and lists it nowhere else: ward's CRL covers its own CA only, and
// Vault's CRL is not updated.
func (s *Server) signX509Vault(req *request, plan *x509Plan) (any, *apiError) {
	if len(plan.dnsNames) > 0 || len(plan.ips) > 0 {
		return nil, errorf(http.StatusBadRequest, "DNS and IP SANs are not supported with ca.backend vault-pki; request them from Vault directly")
	}
	id := plan.id
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: plan.csr.Raw})
	signed, err := s.vault.SignCSR(req.r.Context(), vault.SignRequest{
		Mount: s.cfg.CA.VaultPKI.Mount, Role: s.cfg.CA.VaultPKI.Role,
		CSR: csrPEM, URISANs: []string{id.String()}, TTL: plan.ttl,
	})
	if err != nil {
		return nil, vaultError(err)
	}
	block, _ := pem.Decode(signed.CertificatePEM)
	if block == nil {
		return nil, internal("Vault PKI signing", errNoPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, internal("Vault PKI signing", err)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != id.String() {
		return nil, internal("Vault PKI signing", errWrongSAN)
	}

	leaseID, err := newLeaseID("x509/" + id.String())
	if err != nil {
		return nil, internal("lease id", err)
	}
	serial := ca.SerialHex(cert)
	l := store.Lease{
		ID: leaseID, Kind: "x509", Object: "x509/" + id.String(), Subject: id.String(), Serial: serial,
		IssuedAt: cert.NotBefore, ExpiresAt: cert.NotAfter, MaxExpiresAt: cert.NotAfter,
		Meta: map[string]string{"issuer": "vault-pki"},
	}
	if err := s.createLease(req.r.Context(), l); err != nil {
		return nil, err
	}
	req.rec.LeaseID = leaseID
	s.met.issued("x509", time.Since(plan.start))

	leaf := string(signed.CertificatePEM)
	return x509Response{
		SPIFFEID: id.String(), Certificate: leaf, Chain: []string{leaf},
		Bundle: string(signed.ChainPEM), Serial: serial, LeaseID: leaseID, ExpiresAt: cert.NotAfter,
	}, nil
}

type vaultPKIError string

func (e vaultPKIError) Error() string { return string(e) }

const (
	errNoPEM    = vaultPKIError("Vault returned no PEM certificate")
	errWrongSAN = vaultPKIError("Vault returned a certificate without the requested SPIFFE ID as its only URI SAN")
)
