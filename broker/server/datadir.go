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
	kek      kek.KEK
	keyset   *keyset.Keyset
	caCert   *x509.Certificate
	caSigner crypto.Signer
	jwt      crypto.Signer
	auditKey []byte
	admin    []byte // the admin bearer token
	created  bool   // true when this start created the data directory's keys
	setAside string // directory an interrupted first start's files were moved to, or ""
}

// openKeys loads the KEK, keyset and keys from dir. On a first start (no
// sealed keyset yet) it creates them all. Afterwards it creates nothing: a
// missing or damaged file is an error naming it, because a silently new KEK,
// keyset or CA key would orphan everything sealed or issued before.
func openKeys(dir, kekPath, storePath, trustDomain string, b *backends, now time.Time) (*keys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dir, err)
	}

	ksPath := filepath.Join(dir, fileKeyset)
	var aside string
	// A keyset without a CA certificate and without a store is a first
	// start that stopped part way: nothing was issued, so it starts over.
	// With a store, the directory was in use and ca.pem was lost; open
	// reports that instead of making a new CA.
	if fileExists(ksPath) && !fileExists(filepath.Join(dir, fileCACert)) && !fileExists(storePath) {
		var err error
		if aside, err = setAsideIncomplete(dir, now); err != nil {
			return nil, fmt.Errorf("a first start in %s stopped before writing %s; moving its files aside failed: %w", dir, fileCACert, err)
		}
	}
	k := &keys{created: !fileExists(ksPath), setAside: aside}
	if k.created {
		if err := k.create(dir, kekPath, trustDomain, b, now); err != nil {
			return nil, err
		}
	} else if err := k.open(dir, kekPath, b); err != nil {
		return nil, err
	}

	var err error
	if k.admin, err = adminToken(filepath.Join(dir, fileAdminToken)); err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	return k, nil
}

// sealedFiles are created together on a first start.
var sealedFiles = []string{fileCACert, fileCAKey, fileJWTKey, fileAuditKey}

func (k *keys) create(dir, kekPath, trustDomain string, b *backends, now time.Time) error {
	for _, name := range sealedFiles {
		if fileExists(filepath.Join(dir, name)) {
			return fmt.Errorf("%s is missing but %s exists: restore %s from a backup; ward does not create a new keyset over existing keys",
				filepath.Join(dir, fileKeyset), filepath.Join(dir, name), fileKeyset)
		}
	}

	key := b.kek
	if key == nil {
		local, err := kek.OpenLocal(kekPath)
		if errors.Is(err, fs.ErrNotExist) {
			local, err = kek.CreateLocal(kekPath, rand.Reader)
		}
		if err != nil {
			return fmt.Errorf("key-encryption key: %w", err)
		}
		key = local
	}
	k.kek = key
	var err error
	if k.keyset, err = keyset.Create(filepath.Join(dir, fileKeyset), key); err != nil {
		return fmt.Errorf("keyset: %w", sealedErr(err))
	}

	// With an HSM CA the key already lives on the token (ward hsm init);
	// only the self-signed certificate is made here.
	caKey := b.caSigner
	if caKey == nil {
		if caKey, err = k.newSealedECKey(filepath.Join(dir, fileCAKey)); err != nil {
			return fmt.Errorf("CA key: %w", err)
		}
	}
	cert, err := ca.CreateRoot(caKey, trustDomain, now, rootValidity, rand.Reader)
	if err != nil {
		return err
	}
	k.caCert, k.caSigner = cert, caKey

	if k.jwt, err = k.newSealedECKey(filepath.Join(dir, fileJWTKey)); err != nil {
		return fmt.Errorf("JWT signing key: %w", err)
	}
	k.auditKey = make([]byte, 32)
	if _, err := rand.Read(k.auditKey); err != nil {
		return err
	}
	if err := k.writeSealed(filepath.Join(dir, fileAuditKey), k.auditKey); err != nil {
		return err
	}

	// The CA certificate is written last: its presence marks a completed
	// first start (see openKeys).
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := writeFileAtomic(filepath.Join(dir, fileCACert), pemBytes, 0o644); err != nil {
		return fmt.Errorf("write CA certificate: %w", err)
	}
	return nil
}

// setAsideIncomplete moves the files of a first start that stopped before
// writing the CA certificate into a subdirectory, so the next start begins
// afresh. Nothing was issued with them: no certificate can be issued
// before ca.pem exists. They are kept rather than deleted, in case
// ca.pem was removed by hand from a data directory that was in use.
func setAsideIncomplete(dir string, now time.Time) (string, error) {
	aside := filepath.Join(dir, "incomplete-"+now.UTC().Format("20060102T150405Z"))
	if err := os.Mkdir(aside, 0o700); err != nil {
		return "", err
	}
	for _, name := range []string{fileKeyset, fileKeyset + ".usage.json", fileCAKey, fileJWTKey, fileAuditKey, "masking.key"} {
		err := os.Rename(filepath.Join(dir, name), filepath.Join(aside, name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	return aside, nil
}

func (k *keys) open(dir, kekPath string, b *backends) error {
	var key kek.KEK = b.kek
	if key == nil {
		local, err := kek.OpenLocal(kekPath)
		if err != nil {
			return fmt.Errorf("key-encryption key: %w", err)
		}
		key = local
	}
	k.kek = key
	var err error
	if k.keyset, err = keyset.Open(filepath.Join(dir, fileKeyset), key); err != nil {
		if b.kek == nil {
			// A local key file that does not open the keyset is the wrong
			// key or damage, not an outage: waiting will not fix it.
			return fmt.Errorf("keyset %s does not open with %s: %w", filepath.Join(dir, fileKeyset), kekPath, err)
		}
		return fmt.Errorf("keyset: %w", sealedErr(err))
	}

	if b.caSigner != nil {
		k.caSigner = b.caSigner
	} else if k.caSigner, err = k.openSealedKey(filepath.Join(dir, fileCAKey)); err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	if k.caCert, err = readCACert(filepath.Join(dir, fileCACert)); err != nil {
		return err
	}
	if !publicKeysEqual(k.caCert.PublicKey, k.caSigner.Public()) {
		return fmt.Errorf("%s does not match the CA signing key (%s or the HSM's CA key)", filepath.Join(dir, fileCACert), fileCAKey)
	}
	if k.jwt, err = k.openSealedKey(filepath.Join(dir, fileJWTKey)); err != nil {
		return fmt.Errorf("JWT signing key: %w", err)
	}
	if k.auditKey, err = k.readSealed(filepath.Join(dir, fileAuditKey)); err != nil {
		return fmt.Errorf("audit HMAC key: %w", err)
	}
	return nil
}

func readCACert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}

// newSealedECKey creates a P-256 private key and stores it sealed by the
// keyset.
func (k *keys) newSealedECKey(path string) (crypto.Signer, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	return priv, k.writeSealed(path, der)
}

// openSealedKey unseals a PKCS#8 private key.
func (k *keys) openSealedKey(path string) (crypto.Signer, error) {
	der, err := k.readSealed(path)
	if err != nil {
		return nil, err
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

// writeSealed encrypts plaintext with the keyset and writes it atomically.
// The file name is the associated data, so a sealed file renamed or copied
// over another does not open.
func (k *keys) writeSealed(path string, plaintext []byte) error {
	ct, err := k.keyset.Encrypt(plaintext, []byte(filepath.Base(path)))
	if err != nil {
		return err
	}
	return writeFileAtomic(path, ct, 0o600)
}

func (k *keys) readSealed(path string) ([]byte, error) {
	sealed, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	plaintext, err := k.keyset.Decrypt(sealed, []byte(filepath.Base(path)))
	if err != nil {
		return nil, fmt.Errorf("unseal %s: %w", path, err)
	}
	return plaintext, nil
}

// adminToken reads the admin bearer token, or creates one. The file is the
// operator's credential, like Vault's root token, and is readable by its
// owner only. The server keeps only its digest in memory for comparison.
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
	if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o: the admin token must be readable by its owner only (chmod 600)", path, info.Mode().Perm())
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
