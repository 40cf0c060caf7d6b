package vaulttest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

type kvVersion struct {
	data    map[string]any
	created time.Time
}

// DatabaseRole shapes the leases that database/creds/<role> hands out.
type DatabaseRole struct {
	DefaultTTL time.Duration
	MaxTTL     time.Duration
}

type lease struct {
	id        string
	expiresAt time.Time
	maxAt     time.Time
	username  string
}

// AddDatabaseRole lets database/creds/<name> issue credentials.
func (s *Server) AddDatabaseRole(name string, r DatabaseRole) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dbRoles[name] = r
}

// LeaseActive reports whether a lease exists and has not expired.
func (s *Server) LeaseActive(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.leases[id]
	return l != nil && s.now().Before(l.expiresAt)
}

// LeaseExpiry returns when a lease expires, or the zero time.
func (s *Server) LeaseExpiry(id string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.leases[id]; l != nil {
		return l.expiresAt
	}
	return time.Time{}
}

// PutKV stores a new version of a KV v2 secret, as a write through the API
// would.
func (s *Server) PutKV(mount, path string, data map[string]any) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := mount + "/" + path
	s.kv[key] = append(s.kv[key], kvVersion{data: data, created: s.now()})
	return len(s.kv[key])
}

func (s *Server) kvRead(w http.ResponseWriter, mount, path string) {
	versions := s.kv[mount+"/"+path]
	if len(versions) == 0 {
		writeErrors(w, http.StatusNotFound)
		return
	}
	v := versions[len(versions)-1]
	writeJSON(w, http.StatusOK, response{Data: map[string]any{
		"data":     v.data,
		"metadata": kvMetadata(v, len(versions)),
	}})
}

func (s *Server) kvWrite(w http.ResponseWriter, r *http.Request, mount, path string) {
	var body struct {
		Data map[string]any `json:"data"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	if body.Data == nil {
		writeErrors(w, http.StatusBadRequest, "no data provided")
		return
	}
	key := mount + "/" + path
	v := kvVersion{data: body.Data, created: s.now()}
	s.kv[key] = append(s.kv[key], v)
	writeJSON(w, http.StatusOK, response{Data: kvMetadata(v, len(s.kv[key]))})
}

func kvMetadata(v kvVersion, version int) map[string]any {
	return map[string]any{
		"created_time":    v.created.UTC().Format(time.RFC3339Nano),
		"custom_metadata": nil,
		"deletion_time":   "",
		"destroyed":       false,
		"version":         version,
	}
}

func (s *Server) databaseCreds(w http.ResponseWriter, role string) {
	r, ok := s.dbRoles[role]
	if !ok {
		writeErrors(w, http.StatusBadRequest, fmt.Sprintf("unknown role: %s", role))
		return
	}
	now := s.now()
	l := &lease{
		id:        "database/creds/" + role + "/" + randomHex(12),
		expiresAt: now.Add(r.DefaultTTL),
		maxAt:     now.Add(r.MaxTTL),
		username:  fmt.Sprintf("v-token-%s-%s", role, randomHex(10)),
	}
	s.leases[l.id] = l
	writeJSON(w, http.StatusOK, response{
		LeaseID:       l.id,
		Renewable:     true,
		LeaseDuration: int(r.DefaultTTL.Seconds()),
		Data:          map[string]any{"username": l.username, "password": "A1a-" + randomHex(10)},
	})
}

// leaseFor returns the live lease with id, or writes Vault's 400 "lease not
// found", which Vault returns for unknown and expired leases alike.
func (s *Server) leaseFor(w http.ResponseWriter, id string) *lease {
	l := s.leases[id]
	if l == nil || !s.now().Before(l.expiresAt) {
		delete(s.leases, id)
		writeErrors(w, http.StatusBadRequest, "lease not found")
		return nil
	}
	return l
}

func (s *Server) renewLease(w http.ResponseWriter, r *http.Request) {
	var body struct {
		LeaseID   string `json:"lease_id"`
		Increment any    `json:"increment"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	l := s.leaseFor(w, body.LeaseID)
	if l == nil {
		return
	}

	now := s.now()
	increment, ok := parseSeconds(body.Increment)
	if !ok || increment <= 0 {
		increment = l.expiresAt.Sub(now)
	}
	expires := now.Add(increment)
	if expires.After(l.maxAt) {
		expires = l.maxAt
	}
	l.expiresAt = expires
	writeJSON(w, http.StatusOK, response{
		LeaseID:       l.id,
		Renewable:     true,
		LeaseDuration: int(expires.Sub(now).Round(time.Second).Seconds()),
	})
}

func (s *Server) revokeLease(w http.ResponseWriter, r *http.Request) {
	var body struct {
		LeaseID string `json:"lease_id"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	if s.leaseFor(w, body.LeaseID) == nil {
		return
	}
	delete(s.leases, body.LeaseID)
	w.WriteHeader(http.StatusNoContent)
}

type pkiCA struct {
	cert    *x509.Certificate
	certPEM string
	key     *ecdsa.PrivateKey
	// issued maps the serial of each signed certificate, as Vault formats
	// it, to its expiry; revoked holds the revoked serials.
	issued  map[string]time.Time
	revoked map[string]time.Time
}

func (s *Server) pkiSign(w http.ResponseWriter, r *http.Request, role string) {
	var body struct {
		CSR        string `json:"csr"`
		CommonName string `json:"common_name"`
		URISANs    string `json:"uri_sans"`
		AltNames   string `json:"alt_names"`
		IPSANs     string `json:"ip_sans"`
		TTL        any    `json:"ttl"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	block, _ := pem.Decode([]byte(body.CSR))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		writeErrors(w, http.StatusBadRequest, "csr contains no data")
		return
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err == nil {
		err = csr.CheckSignature()
	}
	if err != nil {
		writeErrors(w, http.StatusBadRequest, "certificate request could not be parsed: "+err.Error())
		return
	}

	ca, err := s.ca()
	if err != nil {
		writeErrors(w, http.StatusInternalServerError, err.Error())
		return
	}
	ttl, ok := parseSeconds(body.TTL)
	if !ok || ttl <= 0 {
		ttl = time.Hour
	}
	now := s.now()
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: body.CommonName},
		NotBefore:    now.Add(-30 * time.Second),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, raw := range strings.Split(body.URISANs, ",") {
		if raw = strings.TrimSpace(raw); raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			writeErrors(w, http.StatusBadRequest, "invalid URI SAN "+raw)
			return
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	for _, name := range splitList(body.AltNames) {
		tmpl.DNSNames = append(tmpl.DNSNames, name)
	}
	for _, raw := range splitList(body.IPSANs) {
		ip := net.ParseIP(raw)
		if ip == nil {
			writeErrors(w, http.StatusBadRequest, "the value '"+raw+"' is not a valid IP address")
			return
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		writeErrors(w, http.StatusBadRequest, err.Error())
		return
	}

	serialHex := colonHex(fmt.Sprintf("%x", serial))
	ca.issued[serialHex] = tmpl.NotAfter
	writeJSON(w, http.StatusOK, response{Data: map[string]any{
		"certificate":   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		"issuing_ca":    ca.certPEM,
		"ca_chain":      []string{ca.certPEM},
		"serial_number": serialHex,
		"expiration":    tmpl.NotAfter.Unix(),
	}})
}

// splitList splits a comma-separated parameter, dropping empty entries.
func splitList(list string) []string {
	var out []string
	for _, v := range strings.Split(list, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// pkiRevoke revokes a certificate by serial. As Vault does, it rejects a
// serial it never issued and accepts an expired certificate without
// listing it.
func (s *Server) pkiRevoke(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Serial string `json:"serial_number"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	ca, err := s.ca()
	if err != nil {
		writeErrors(w, http.StatusInternalServerError, err.Error())
		return
	}
	serial := strings.ToLower(strings.ReplaceAll(body.Serial, "-", ":"))
	notAfter, ok := ca.issued[serial]
	if !ok {
		writeErrors(w, http.StatusBadRequest, "certificate with serial "+body.Serial+" not found.")
		return
	}
	now := s.now()
	if !now.Before(notAfter) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if _, done := ca.revoked[serial]; !done {
		ca.revoked[serial] = now
	}
	writeJSON(w, http.StatusOK, response{Data: map[string]any{
		"revocation_time":         ca.revoked[serial].Unix(),
		"revocation_time_rfc3339": ca.revoked[serial].UTC().Format(time.RFC3339Nano),
	}})
}

// CertRevoked reports whether the stand-in PKI revoked the certificate
// with serial, in Vault's colon-separated hex.
func (s *Server) CertRevoked(serial string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pki == nil {
		return false
	}
	_, ok := s.pki.revoked[serial]
	return ok
}

// CACertificate returns the stand-in PKI's CA certificate, creating it on
// first use.
func (s *Server) CACertificate() (*x509.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ca, err := s.ca()
	if err != nil {
		return nil, err
	}
	return ca.cert, nil
}

func (s *Server) ca() (*pkiCA, error) {
	if s.pki != nil {
		return s.pki, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := s.now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vaulttest root"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	s.pki = &pkiCA{
		cert: cert, key: key, certPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		issued: map[string]time.Time{}, revoked: map[string]time.Time{},
	}
	return s.pki, nil
}

// colonHex formats a hex serial as Vault does: byte pairs joined by ':'.
func colonHex(h string) string {
	if len(h)%2 == 1 {
		h = "0" + h
	}
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

func (s *Server) transitKey(name string) (cipher.AEAD, error) {
	key, ok := s.transit[name]
	if !ok {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		s.transit[name] = key
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// transitEncrypt creates the key on first use, as Vault does when the
// policy allows it. Ciphertexts are "vault:v1:" + base64(nonce||sealed).
func (s *Server) transitEncrypt(w http.ResponseWriter, r *http.Request, name string) {
	var body struct {
		Plaintext string `json:"plaintext"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	plaintext, err := base64.StdEncoding.DecodeString(body.Plaintext)
	if err != nil {
		writeErrors(w, http.StatusBadRequest, "failed to base64-decode plaintext")
		return
	}
	aead, err := s.transitKey(name)
	if err != nil {
		writeErrors(w, http.StatusInternalServerError, err.Error())
		return
	}
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	sealed := aead.Seal(nonce, nonce, plaintext, nil)
	writeJSON(w, http.StatusOK, response{Data: map[string]any{
		"ciphertext":  "vault:v1:" + base64.StdEncoding.EncodeToString(sealed),
		"key_version": 1,
	}})
}

func (s *Server) transitDecrypt(w http.ResponseWriter, r *http.Request, name string) {
	var body struct {
		Ciphertext string `json:"ciphertext"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	if _, ok := s.transit[name]; !ok {
		writeErrors(w, http.StatusBadRequest, "encryption key not found")
		return
	}
	aead, err := s.transitKey(name)
	if err != nil {
		writeErrors(w, http.StatusInternalServerError, err.Error())
		return
	}
	raw, ok := strings.CutPrefix(body.Ciphertext, "vault:v1:")
	sealed, err := base64.StdEncoding.DecodeString(raw)
	if !ok || err != nil || len(sealed) < aead.NonceSize() {
		writeErrors(w, http.StatusBadRequest, "invalid ciphertext: no prefix")
		return
	}
	plaintext, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], nil)
	if err != nil {
		writeErrors(w, http.StatusBadRequest, "cipher: message authentication failed")
		return
	}
	writeJSON(w, http.StatusOK, response{Data: map[string]any{
		"plaintext": base64.StdEncoding.EncodeToString(plaintext),
	}})
}
