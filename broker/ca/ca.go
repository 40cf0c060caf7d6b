// Package ca signs X.509-SVIDs (SPIFFE X.509 workload certificates) and CRLs
// with ward's certificate authority.
//
// The signing key is any crypto.Signer: the local CA key unsealed in memory,
// or a key that never leaves an HSM. Every certificate carries exactly one
// URI SAN, the SPIFFE ID, as the X.509-SVID specification requires. Requests
// for CA certificates are rejected; only leaf certificates are issued.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"time"
)

// ErrInvalidCSR wraps every reason a certificate signing request is rejected.
var ErrInvalidCSR = errors.New("invalid CSR")

// maxBackdate is how far before issuance a certificate becomes valid.
const maxBackdate = 30 * time.Second

// minRSABits is the smallest RSA modulus accepted in a CSR.
const minRSABits = 2048

// CA issues leaf certificates under one CA certificate. It is safe for
// concurrent use when its Signer is.
type CA struct {
	cert   *x509.Certificate
	signer crypto.Signer
	rand   io.Reader
	now    func() time.Time
}

// Option configures a CA.
type Option func(*CA)

// WithClock sets the source of the current time (tests use a fixed clock).
func WithClock(now func() time.Time) Option { return func(c *CA) { c.now = now } }

// WithRand sets the source of randomness for serial numbers and signatures.
func WithRand(r io.Reader) Option { return func(c *CA) { c.rand = r } }

// New returns a CA that signs with signer under cert.
func New(cert *x509.Certificate, signer crypto.Signer, opts ...Option) (*CA, error) {
	if !cert.IsCA {
		return nil, fmt.Errorf("ca: certificate %q is not a CA certificate", cert.Subject)
	}
	c := &CA{cert: cert, signer: signer, rand: rand.Reader, now: time.Now}
	for _, opt := range opts {
		opt(c)
	}
	return c, nil
}

// Certificate returns the CA certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// CreateRoot makes a self-signed root CA certificate for trustDomain.
func CreateRoot(signer crypto.Signer, trustDomain string, now time.Time, validity time.Duration, random io.Reader) (*x509.Certificate, error) {
	serial, err := newSerial(random)
	if err != nil {
		return nil, err
	}
	td := &url.URL{Scheme: "spiffe", Host: trustDomain}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"ward"}, CommonName: "ward root CA " + trustDomain},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{td},
	}
	der, err := x509.CreateCertificate(random, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("ca: create root certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// Request is one certificate to issue.
type Request struct {
	PublicKey crypto.PublicKey
	SPIFFEID  *url.URL
	DNSNames  []string
	IPs       []net.IP
	TTL       time.Duration
}

// Issued is a signed leaf certificate.
type Issued struct {
	Cert *x509.Certificate
	DER  []byte
}

// Sign issues a leaf certificate valid from now for req.TTL.
func (c *CA) Sign(req Request) (Issued, error) {
	serial, err := newSerial(c.rand)
	if err != nil {
		return Issued{}, err
	}
	// Backdating NotBefore lets a peer whose clock runs slightly behind
	// accept a fresh certificate; the lifetime stays exactly the TTL.
	backdate := min(maxBackdate, req.TTL/10)
	now := c.now().UTC().Add(-backdate).Truncate(time.Second)
	notAfter := now.Add(req.TTL)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}

	usage := x509.KeyUsageDigitalSignature
	if _, isRSA := req.PublicKey.(*rsa.PublicKey); isRSA {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"ward"}},
		NotBefore:             now,
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{req.SPIFFEID},
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPs,
	}
	if len(req.DNSNames) > 0 {
		tmpl.Subject.CommonName = req.DNSNames[0]
	}
	der, err := x509.CreateCertificate(c.rand, tmpl, c.cert, req.PublicKey, c.signer)
	if err != nil {
		return Issued{}, fmt.Errorf("ca: sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Issued{}, fmt.Errorf("ca: parse issued certificate: %w", err)
	}
	return Issued{Cert: cert, DER: der}, nil
}

// CRL returns a DER CRL listing the given serials (hex) with their
// revocation times, valid for nextUpdate.
func (c *CA) CRL(revoked map[string]time.Time, number int64, nextUpdate time.Duration) ([]byte, error) {
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for hexSerial, at := range revoked {
		serial, ok := new(big.Int).SetString(hexSerial, 16)
		if !ok {
			return nil, fmt.Errorf("ca: invalid serial %q in revocation list", hexSerial)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: at})
	}
	now := c.now().UTC()
	tmpl := &x509.RevocationList{
		RevokedCertificateEntries: entries,
		Number:                    big.NewInt(number),
		ThisUpdate:                now,
		NextUpdate:                now.Add(nextUpdate),
	}
	der, err := x509.CreateRevocationList(c.rand, tmpl, c.cert, c.signer)
	if err != nil {
		return nil, fmt.Errorf("ca: create CRL: %w", err)
	}
	return der, nil
}

// SerialHex returns the form in which ward stores and compares serials.
func SerialHex(cert *x509.Certificate) string { return cert.SerialNumber.Text(16) }

func newSerial(random io.Reader) (*big.Int, error) {
	// 128 random bits, positive, as the CA/Browser Forum Baseline Requirements require at least 64.
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	serial, err := rand.Int(random, limit)
	if err != nil {
		return nil, fmt.Errorf("ca: generate serial: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

// oidBasicConstraints identifies the basicConstraints extension (RFC 5280, 4.2.1.9).
var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

// ParseCSR decodes a PEM or DER certificate signing request and checks its
// signature, its key type and size, and that it does not ask to be a CA.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	der := data
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("%w: PEM block is %q, want CERTIFICATE REQUEST", ErrInvalidCSR, block.Type)
		}
		der = block.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature does not verify: %v", ErrInvalidCSR, err)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return nil, err
	}
	for _, ext := range csr.Extensions {
		if ext.Id.Equal(oidBasicConstraints) && requestsCA(ext.Value) {
			return nil, fmt.Errorf("%w: requests a CA certificate (basicConstraints CA:TRUE); ward issues leaf certificates only", ErrInvalidCSR)
		}
	}
	if len(csr.EmailAddresses) > 0 {
		return nil, fmt.Errorf("%w: email SANs are not allowed", ErrInvalidCSR)
	}
	if len(csr.URIs) > 1 {
		return nil, fmt.Errorf("%w: %d URI SANs, an X.509-SVID has exactly one", ErrInvalidCSR, len(csr.URIs))
	}
	return csr, nil
}

func requestsCA(value []byte) bool {
	var bc struct {
		IsCA       bool `asn1:"optional"`
		MaxPathLen int  `asn1:"optional,default:-1"`
	}
	if _, err := asn1.Unmarshal(value, &bc); err != nil {
		return true // unparsable basicConstraints: treat as a CA request and reject
	}
	return bc.IsCA
}

func checkKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("%w: ECDSA curve %s not allowed, use P-256 or P-384", ErrInvalidCSR, k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("%w: RSA key of %d bits, at least %d required", ErrInvalidCSR, k.N.BitLen(), minRSABits)
		}
	default:
		return fmt.Errorf("%w: unsupported key type %T", ErrInvalidCSR, pub)
	}
	return nil
}
