package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"ward.dev/ward/broker/ca"
	"ward.dev/ward/crypto/kek"
	"ward.dev/ward/crypto/keyset"
)

// Files in the data directory. Private keys exist on disk only sealed by the
// keyset, and the keyset only sealed by the KEK.
const (
	fileKeyset     = "keyset.sealed"
	fileCACert     = "ca.pem"
	fileCAKey      = "ca-key.sealed"
	fileJWTKey     = "jwt-key.sealed"
	fileAuditKey   = "audit-key.sealed"
	fileAdminToken = "admin.token"
	fileStore      = "ward.db"

	rootValidity = 10 * 365 * 24 * time.Hour
)

// keys is the key material unsealed at start.
type keys struct {
	keyset   *keyset.Keyset
	caCert   *x509.Certificate
	caSigner crypto.Signer
	jwt      crypto.Signer
	auditKey []byte
	admin    []byte // the admin bearer token
	created  bool   // true when this start created the data directory's keys
}

// openKeys loads the KEK, keyset and keys from dir, creating whichever are
// missing on a first start.
func openKeys(dir, kekPath, trustDomain string, now time.Time) (*keys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dir, err)
	}

	k := &keys{}
	key, err := kek.OpenLocal(kekPath)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = kek.CreateLocal(kekPath, rand.Reader)
		k.created = true
	}
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}

	ksPath := filepath.Join(dir, fileKeyset)
	k.keyset, err = keyset.Open(ksPath, key)
	if errors.Is(err, fs.ErrNotExist) {
		k.keyset, err = keyset.Create(ksPath, key)
	}
	if err != nil {
		return nil, fmt.Errorf("keyset: %w", err)
	}

	if err := k.openCA(dir, trustDomain, now); err != nil {
		return nil, err
	}
	if k.jwt, err = k.sealedECKey(filepath.Join(dir, fileJWTKey)); err != nil {
		return nil, fmt.Errorf("JWT signing key: %w", err)
	}
	if k.auditKey, err = k.sealedRandom(filepath.Join(dir, fileAuditKey), 32); err != nil {
		return nil, fmt.Errorf("audit HMAC key: %w", err)
	}
	if k.admin, err = adminToken(filepath.Join(dir, fileAdminToken)); err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	return k, nil
}

func (k *keys) openCA(dir, trustDomain string, now time.Time) error {
	signer, err := k.sealedECKey(filepath.Join(dir, fileCAKey))
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	k.caSigner = signer

	certPath := filepath.Join(dir, fileCACert)
	data, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		cert, err := ca.CreateRoot(signer, trustDomain, now, rootValidity, rand.Reader)
		if err != nil {
			return err
		}
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
		if err := writeFileAtomic(certPath, pemBytes, 0o644); err != nil {
			return fmt.Errorf("write CA certificate: %w", err)
		}
		k.caCert = cert
		return nil
	}
	if err != nil {
		return fmt.Errorf("read CA certificate: %w", err)
	}

	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("%s: no PEM certificate", certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %w", certPath, err)
	}
	if !publicKeysEqual(cert.PublicKey, signer.Public()) {
		return fmt.Errorf("%s does not match the sealed CA key %s", certPath, fileCAKey)
	}
	k.caCert = cert
	return nil
}

// sealedECKey loads a P-256 private key sealed by the keyset, or creates one.
// The file name is the associated data, so a sealed key copied under
// another name does not open.
func (k *keys) sealedECKey(path string) (crypto.Signer, error) {
	aad := []byte(filepath.Base(path))
	sealed, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, err
		}
		defer clear(der)
		ct, err := k.keyset.Encrypt(der, aad)
		if err != nil {
			return nil, err
		}
		return priv, writeFileAtomic(path, ct, 0o600)
	}
	if err != nil {
		return nil, err
	}

	der, err := k.keyset.Decrypt(sealed, aad)
	if err != nil {
		return nil, fmt.Errorf("unseal %s: %w", path, err)
	}
	defer clear(der)
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: key of type %T cannot sign", path, priv)
	}
	return signer, nil
}

// sealedRandom loads n secret bytes sealed by the keyset, or creates them.
func (k *keys) sealedRandom(path string, n int) ([]byte, error) {
	aad := []byte(filepath.Base(path))
	sealed, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		ct, err := k.keyset.Encrypt(b, aad)
		if err != nil {
			return nil, err
		}
		return b, writeFileAtomic(path, ct, 0o600)
	}
	if err != nil {
		return nil, err
	}
	b, err := k.keyset.Decrypt(sealed, aad)
	if err != nil {
		return nil, fmt.Errorf("unseal %s: %w", path, err)
	}
	return b, nil
}

// adminToken reads the admin bearer token, or creates one. The file is the
// operator's credential, like Vault's root token, and is readable by its
// owner only; the server keeps only its digest in memory for comparison.
func adminToken(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		token := []byte(adminTokenPrefix + base64.RawURLEncoding.EncodeToString(raw))
		return token, writeFileAtomic(path, append(token, '\n'), 0o600)
	}
	if err != nil {
		return nil, err
	}
	token := trimSpace(data)
	if len(token) < len(adminTokenPrefix)+40 {
		return nil, fmt.Errorf("%s: token too short; delete the file to create a new one", path)
	}
	return token, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}

// writeFileAtomic writes data to a temporary file in the same directory,
// syncs it and renames it over path, so readers see the old or the new
// content and never a part.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename

	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
