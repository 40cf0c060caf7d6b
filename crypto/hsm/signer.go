package hsm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"

	"github.com/miekg/pkcs11"
)

// Signer is a crypto.Signer whose private key stays on the token. It signs
// with ECDSA (P-256, P-384) or RSA (PKCS #1 v1.5, and PSS when opts is
// *rsa.PSSOptions). The digest must already be hashed, as crypto.Signer
// requires. Signer is safe for concurrent use.
type Signer struct {
	h   *HSM
	ref KeyRef
	pub crypto.PublicKey

	mu     sync.Mutex
	handle pkcs11.ObjectHandle
	gen    uint64
	found  bool
}

var _ crypto.Signer = (*Signer)(nil)

// Signer finds the private key that ref names and reads its public key.
func (h *HSM) Signer(ref KeyRef) (*Signer, error) {
	s := &Signer{h: h, ref: ref}
	err := h.do(func(sh pkcs11.SessionHandle, gen uint64) error {
		handle, err := s.keyHandle(sh, gen)
		if err != nil {
			return err
		}
		s.pub, err = h.publicKey(sh, handle, ref)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Public returns the public key, an *ecdsa.PublicKey or *rsa.PublicKey.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// Sign signs digest with the token's key. ECDSA signatures are ASN.1 DER as
// in crypto/ecdsa. rand is not used, because the token draws its own
// randomness.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	mech, input, err := s.mechanism(digest, opts)
	if err != nil {
		return nil, err
	}

	var sig []byte
	err = s.h.do(func(sh pkcs11.SessionHandle, gen uint64) error {
		handle, err := s.keyHandle(sh, gen)
		if err != nil {
			return err
		}
		if err := s.h.p11.SignInit(sh, mech, handle); err != nil {
			return err
		}
		sig, err = s.h.p11.Sign(sh, input)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrPINIncorrect) {
			return nil, err
		}
		return nil, fmt.Errorf("hsm: signing with %s on %s: %w", s.ref, s.h, err)
	}

	if pub, ok := s.pub.(*ecdsa.PublicKey); ok {
		return ecdsaDER(sig, pub)
	}
	return sig, nil
}

// keyHandle returns the private key's object handle, searching again after
// a library reset, because handles do not survive C_Finalize.
func (s *Signer) keyHandle(sh pkcs11.SessionHandle, gen uint64) (pkcs11.ObjectHandle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.found && s.gen == gen {
		return s.handle, nil
	}
	handle, err := s.h.findOne(sh, s.ref, pkcs11.CKO_PRIVATE_KEY)
	if err != nil {
		return 0, err
	}
	s.handle, s.gen, s.found = handle, gen, true
	return handle, nil
}

// mechanism returns the PKCS#11 mechanism and the data the token signs.
func (s *Signer) mechanism(digest []byte, opts crypto.SignerOpts) ([]*pkcs11.Mechanism, []byte, error) {
	hash := opts.HashFunc()
	if hash != 0 && len(digest) != hash.Size() {
		return nil, nil, fmt.Errorf("hsm: digest is %d bytes, want %d for %v", len(digest), hash.Size(), hash)
	}

	switch pub := s.pub.(type) {
	case *ecdsa.PublicKey:
		return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, digest, nil

	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			mech, err := pssMechanism(pss, hash, pub)
			return mech, digest, err
		}
		prefix, ok := digestInfoPrefix[hash]
		if !ok {
			return nil, nil, fmt.Errorf("hsm: RSA PKCS #1 v1.5 signing with %v is not supported", hash)
		}
		input := append(bytes.Clone(prefix), digest...)
		return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, input, nil
	}
	return nil, nil, fmt.Errorf("hsm: unsupported public key type %T", s.pub)
}

// pssMechanism builds CKM_RSA_PKCS_PSS parameters. An automatic salt length
// becomes the hash length, which every verifier accepts.
func pssMechanism(opts *rsa.PSSOptions, hash crypto.Hash, pub *rsa.PublicKey) ([]*pkcs11.Mechanism, error) {
	params, ok := pssParams[hash]
	if !ok {
		return nil, fmt.Errorf("hsm: RSA-PSS signing with %v is not supported", hash)
	}
	salt := opts.SaltLength
	switch salt {
	case rsa.PSSSaltLengthAuto, rsa.PSSSaltLengthEqualsHash:
		salt = hash.Size()
	}
	if salt < 0 || salt > (pub.N.BitLen()-1+7)/8-2-hash.Size() {
		return nil, fmt.Errorf("hsm: RSA-PSS salt length %d out of range", opts.SaltLength)
	}
	raw := pkcs11.NewPSSParams(params.mech, params.mgf, uint(salt))
	return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, raw)}, nil
}

var pssParams = map[crypto.Hash]struct{ mech, mgf uint }{
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

// digestInfoPrefix holds the DER encoding of the DigestInfo header for each
// hash (RFC 8017 section 9.2, note 1), because CKM_RSA_PKCS signs the
// DigestInfo followed by the hash.
var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// ecdsaDER converts the PKCS#11 signature r || s into the ASN.1 DER
// Ecdsa-Sig-Value of RFC 3279 section 2.2.3.
func ecdsaDER(raw []byte, pub *ecdsa.PublicKey) ([]byte, error) {
	size := (pub.Curve.Params().BitSize + 7) / 8
	if len(raw) != 2*size {
		return nil, fmt.Errorf("hsm: ECDSA signature is %d bytes, want %d", len(raw), 2*size)
	}
	r := new(big.Int).SetBytes(raw[:size])
	s := new(big.Int).SetBytes(raw[size:])

	return asn1.Marshal(struct{ R, S *big.Int }{r, s})
}

var (
	oidP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384 = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
)

// publicKey reads the public half of the private key obj: the modulus and
// exponent of an RSA key from obj itself, the point of an EC key from the
// matching public key object.
func (h *HSM) publicKey(sh pkcs11.SessionHandle, obj pkcs11.ObjectHandle, ref KeyRef) (crypto.PublicKey, error) {
	b, err := h.attribute(sh, obj, pkcs11.CKA_KEY_TYPE)
	if err != nil {
		return nil, err
	}
	keyType, _ := ulong(b)

	switch keyType {
	case pkcs11.CKK_RSA:
		n, err := h.attribute(sh, obj, pkcs11.CKA_MODULUS)
		if err != nil {
			return nil, err
		}
		e, err := h.attribute(sh, obj, pkcs11.CKA_PUBLIC_EXPONENT)
		if err != nil {
			return nil, err
		}
		exp := new(big.Int).SetBytes(e)
		if !exp.IsInt64() || exp.Int64() < 3 || exp.Int64() > 1<<31-1 {
			return nil, fmt.Errorf("hsm: RSA key %s has an unsupported public exponent", ref)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp.Int64())}, nil

	case pkcs11.CKK_EC:
		pubObj, err := h.findOne(sh, publicRef(ref, h, sh, obj), pkcs11.CKO_PUBLIC_KEY)
		if err != nil {
			return nil, fmt.Errorf("hsm: public key of EC key %s: %w", ref, err)
		}
		params, err := h.attribute(sh, pubObj, pkcs11.CKA_EC_PARAMS)
		if err != nil {
			return nil, err
		}
		point, err := h.attribute(sh, pubObj, pkcs11.CKA_EC_POINT)
		if err != nil {
			return nil, err
		}
		return parseECPublicKey(params, point)
	}
	return nil, fmt.Errorf("hsm: key %s has key type %s, want EC or RSA", ref, keyTypeName(keyType))
}

// publicRef names the public key that belongs to a private key: by the
// private key's CKA_ID when it has one, else by the same reference.
func publicRef(ref KeyRef, h *HSM, sh pkcs11.SessionHandle, obj pkcs11.ObjectHandle) KeyRef {
	if id, err := h.attribute(sh, obj, pkcs11.CKA_ID); err == nil && len(id) > 0 {
		return KeyRef{ID: id}
	}
	return ref
}

// parseECPublicKey decodes CKA_EC_PARAMS (a named-curve OID) and
// CKA_EC_POINT (an uncompressed point, DER OCTET STRING wrapped as PKCS#11
// v2.40 requires, or raw as some tokens return it).
func parseECPublicKey(params, point []byte) (*ecdsa.PublicKey, error) {
	var oid asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(params, &oid); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("hsm: CKA_EC_PARAMS is not a named curve")
	}
	var curve elliptic.Curve
	switch {
	case oid.Equal(oidP256):
		curve = elliptic.P256()
	case oid.Equal(oidP384):
		curve = elliptic.P384()
	default:
		return nil, fmt.Errorf("hsm: EC curve %v is not supported, want P-256 or P-384", oid)
	}

	var raw []byte
	if rest, err := asn1.Unmarshal(point, &raw); err != nil || len(rest) != 0 {
		raw = point
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
	if err != nil {
		return nil, fmt.Errorf("hsm: CKA_EC_POINT: %v", err)
	}
	return pub, nil
}
