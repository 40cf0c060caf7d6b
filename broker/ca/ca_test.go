package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/broker/ca"
)

func csrPEM(t testing.TB, tmpl *x509.CertificateRequest, key any) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func newCA(t testing.TB, now time.Time) *ca.CA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root, err := ca.CreateRoot(key, "ward.test", now, 24*time.Hour, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(root, key, ca.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseCSRRejects(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	caExt, _ := asn1.Marshal(struct{ IsCA bool }{true})
	two := []*url.URL{{Scheme: "spiffe", Host: "ward.test", Path: "/a"}, {Scheme: "spiffe", Host: "ward.test", Path: "/b"}}

	tests := []struct {
		name string
		csr  []byte
		want string
	}{
		{"not PEM or DER", []byte("hello"), "invalid CSR"},
		{"certificate PEM", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), "want CERTIFICATE REQUEST"},
		{"P-224 key", csrPEM(t, &x509.CertificateRequest{}, p224), "curve P-224 not allowed"},
		{"RSA 1024", csrPEM(t, &x509.CertificateRequest{}, rsa1024), "at least 2048"},
		{"CA request", csrPEM(t, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: caExt}}}, p256), "requests a CA certificate"},
		{"email SAN", csrPEM(t, &x509.CertificateRequest{EmailAddresses: []string{"a@b.c"}}, p256), "email SANs"},
		{"two URI SANs", csrPEM(t, &x509.CertificateRequest{URIs: two}, p256), "exactly one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ca.ParseCSR(tt.csr)
			if !errors.Is(err, ca.ErrInvalidCSR) {
				t.Fatalf("ParseCSR = %v, want ErrInvalidCSR", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseCSR = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseCSRBitFlipFailsSignature(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "workload"}}, key)
	// Flip a bit inside the subject's common name, which the signature covers.
	i := strings.Index(string(der), "workload")
	der[i] ^= 0x01
	if _, err := ca.ParseCSR(der); !errors.Is(err, ca.ErrInvalidCSR) {
		t.Errorf("ParseCSR(bit-flipped) = %v, want ErrInvalidCSR", err)
	}
}

func TestSignLeaf(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	c := newCA(t, now)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id, _ := url.Parse("spiffe://ward.test/ns/shop/sa/web")

	issued, err := c.Sign(ca.Request{PublicKey: key.Public(), SPIFFEID: id, TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cert := issued.Cert
	if cert.IsCA {
		t.Error("leaf IsCA = true, want false")
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != id.String() {
		t.Errorf("URIs = %v, want [%s]", cert.URIs, id)
	}
	if got := cert.NotAfter.Sub(cert.NotBefore); got != 10*time.Minute {
		t.Errorf("lifetime = %s, want 10m", got)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.Certificate())
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now.Add(time.Minute), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("Verify = %v", err)
	}
}

func TestSignCapsAtCAExpiry(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	c := newCA(t, now)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id, _ := url.Parse("spiffe://ward.test/x")
	issued, err := c.Sign(ca.Request{PublicKey: key.Public(), SPIFFEID: id, TTL: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if issued.Cert.NotAfter.After(c.Certificate().NotAfter) {
		t.Errorf("leaf NotAfter %s is after the CA's %s", issued.Cert.NotAfter, c.Certificate().NotAfter)
	}
}

func TestCRLListsSerials(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	c := newCA(t, now)
	der, err := c.CRL(map[string]time.Time{"abc123": now}, 7, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(c.Certificate()); err != nil {
		t.Errorf("CRL signature: %v", err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Text(16) != "abc123" {
		t.Errorf("CRL entries = %v, want serial abc123", crl.RevokedCertificateEntries)
	}
}

// FuzzParseCSR feeds arbitrary bytes to the CSR parser, which reads
// untrusted input from every issuance request. It must never panic, and
// anything it accepts must carry a valid signature.
func FuzzParseCSR(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.Add(csrPEM(f, &x509.CertificateRequest{}, key))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{0x30, 0x82, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ca.ParseCSR(data)
		if err != nil {
			return
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("ParseCSR accepted a CSR whose signature fails: %v", err)
		}
	})
}
