package server

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"strings"
	"time"

	"ward.dev/ward/broker/ca"
	"ward.dev/ward/broker/vault"
	"ward.dev/ward/internal/store"
)

// signX509Vault has Vault's PKI engine sign a prepared request
// (ca.backend vault-pki). Policy, TTL and CSR checks are ward's, as with the
// local CA; the lease is ward's too. The trust bundle returned is Vault's
// issuing chain. Revoking the lease before the certificate expires revokes
// it at Vault as well (vaultPKIRevoker), so it appears on the mount's CRL.
func (s *Server) signX509Vault(req *request, plan *x509Plan) (any, *apiError) {
	id := plan.id
	ips := ipStrings(plan.ips)
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: plan.csr.Raw})
	mount := cmp.Or(s.cfg.CA.VaultPKI.Mount, "pki")
	signed, err := s.vault.SignCSR(req.r.Context(), vault.SignRequest{
		Mount: mount, Role: s.cfg.CA.VaultPKI.Role,
		CSR: csrPEM, URISANs: []string{id.String()}, DNSNames: plan.dnsNames, IPSANs: ips, TTL: plan.ttl,
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
	// The policy allowed exactly these names, so a certificate with any
	// other (a role that adds the CSR's or the common name) is not handed
	// out.
	if len(cert.URIs) != 1 || cert.URIs[0].String() != id.String() || len(cert.EmailAddresses) > 0 ||
		!sameSet(cert.DNSNames, plan.dnsNames) || !sameSet(ipStrings(cert.IPAddresses), ips) {
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
		Meta: map[string]string{"issuer": "vault-pki", "vault_mount": mount, "vault_serial": signed.Serial},
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
	errWrongSAN = vaultPKIError("Vault returned a certificate whose SANs differ from the requested SPIFFE ID, DNS names and IP addresses")
)

// sameSet reports whether a and b hold the same strings, ignoring order
// and case.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := make(map[string]int, len(a))
	for _, v := range a {
		seen[strings.ToLower(v)]++
	}
	for _, v := range b {
		k := strings.ToLower(v)
		if seen[k] == 0 {
			return false
		}
		seen[k]--
	}
	return true
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// vaultPKIRevoker revokes at Vault the certificates Vault signed for ward
// when their leases are revoked. A lease that ends at or after its
// certificate's expiry needs nothing, so expiry costs Vault no request.
type vaultPKIRevoker struct{ s *Server }

func (r vaultPKIRevoker) Revoke(ctx context.Context, l store.Lease) error {
	if l.Meta["issuer"] != "vault-pki" || !r.s.now().Before(l.ExpiresAt) {
		return nil
	}
	serial := l.Meta["vault_serial"]
	if serial == "" {
		// Leases from before the serial was recorded.
		r.s.log.Warn("Vault PKI certificate revoked at ward only: its lease has no Vault serial", "lease_id", l.ID, "serial", l.Serial)
		return nil
	}
	err := r.s.vault.RevokeCert(ctx, l.Meta["vault_mount"], serial)
	if errors.Is(err, vault.ErrNotFound) {
		// Vault has no record of the certificate (its storage was tidied),
		// so nothing is left to revoke there.
		r.s.log.Warn("Vault PKI has no record of the certificate; revoked at ward only", "lease_id", l.ID, "serial", serial)
		return nil
	}
	return err
}
