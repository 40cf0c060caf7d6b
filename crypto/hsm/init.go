package hsm

import (
	"crypto/rand"
	"encoding/asn1"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
)

// Default labels of the objects InitKeys creates.
const (
	DefaultCALabel  = "ward-ca"
	DefaultKEKLabel = "ward-kek"
)

// InitOptions names the objects InitKeys creates. Empty labels take the
// defaults.
type InitOptions struct {
	CALabel  string // label of the EC P-256 CA signing key pair
	KEKLabel string // label of the AES-256 key-encryption key
}

// InitKeys creates ward's keys on the token: an EC P-256 key pair for the CA
// and an AES-256 KEK. Both secret halves are token objects that only a
// logged-in user can use (CKA_TOKEN, CKA_PRIVATE and CKA_SENSITIVE true) and
// that never leave the token (CKA_EXTRACTABLE false). The two keys of the
// pair share a random 16-byte CKA_ID. InitKeys returns ErrExists and creates
// nothing when an object with either label exists.
func (h *HSM) InitKeys(opts InitOptions) ([]Object, error) {
	if opts.CALabel == "" {
		opts.CALabel = DefaultCALabel
	}
	if opts.KEKLabel == "" {
		opts.KEKLabel = DefaultKEKLabel
	}
	caID := make([]byte, 16)
	kekID := make([]byte, 16)
	if _, err := rand.Read(caID); err != nil {
		return nil, err
	}
	if _, err := rand.Read(kekID); err != nil {
		return nil, err
	}
	curve, err := asn1.Marshal(oidP256)
	if err != nil {
		return nil, err
	}

	var created []Object
	err = h.do(func(sh pkcs11.SessionHandle, _ uint64) error {
		for _, label := range []string{opts.CALabel, opts.KEKLabel} {
			found, err := h.findObjects(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)})
			if err != nil {
				return err
			}
			if len(found) > 0 {
				return fmt.Errorf("%w: %d objects labeled %q on %s; choose other labels", ErrExists, len(found), label, h)
			}
		}

		public := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, curve),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, opts.CALabel),
			pkcs11.NewAttribute(pkcs11.CKA_ID, caID),
		}
		private := append(secretKeyAttributes(opts.CALabel, caID),
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		)
		ecMech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)}
		pubObj, privObj, err := h.p11.GenerateKeyPair(sh, ecMech, public, private)
		if err != nil {
			return fmt.Errorf("hsm: generating EC P-256 key pair %q on %s: %w", opts.CALabel, h, err)
		}

		aes := append(secretKeyAttributes(opts.KEKLabel, kekID),
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		)
		aesMech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}
		kekObj, err := h.p11.GenerateKey(sh, aesMech, aes)
		if err != nil {
			return fmt.Errorf("hsm: generating AES-256 key %q on %s: %w", opts.KEKLabel, h, err)
		}

		created = created[:0]
		for _, obj := range []pkcs11.ObjectHandle{privObj, pubObj, kekObj} {
			o, err := h.describeObject(sh, obj)
			if err != nil {
				return err
			}
			created = append(created, o)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return created, nil
}

// secretKeyAttributes returns the attributes that keep a private or secret
// key inside the token.
func secretKeyAttributes(label string, id []byte) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
}

// List returns the objects on the token whose label starts with
// labelPrefix, private objects included. An empty prefix lists every object.
func (h *HSM) List(labelPrefix string) ([]Object, error) {
	var objects []Object
	err := h.do(func(sh pkcs11.SessionHandle, _ uint64) error {
		found, err := h.findObjects(sh, nil)
		if err != nil {
			return err
		}
		objects = objects[:0]
		for _, obj := range found {
			o, err := h.describeObject(sh, obj)
			if err != nil {
				return err
			}
			if strings.HasPrefix(o.Label, labelPrefix) {
				objects = append(objects, o)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return objects, nil
}
