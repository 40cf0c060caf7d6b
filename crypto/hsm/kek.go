package hsm

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"github.com/miekg/pkcs11"

	"ward.dev/ward/crypto/kek"
)

const (
	gcmIVSize  = 12
	gcmTagSize = 16
)

// KEK is a key-encryption key held in the token: an AES key that the token
// uses with CKM_AES_GCM and never reveals. A ciphertext is a random 12-byte
// IV followed by the token's output, the encrypted data and a 16-byte tag.
// KEK is safe for concurrent use.
type KEK struct {
	h   *HSM
	ref KeyRef

	mu     sync.Mutex
	handle pkcs11.ObjectHandle
	gen    uint64
	found  bool
}

var _ kek.KEK = (*KEK)(nil)

// KEK finds the AES key that ref names. It rejects a key whose attributes
// would let it leave the token (CKA_EXTRACTABLE true or CKA_SENSITIVE false).
func (h *HSM) KEK(ref KeyRef) (*KEK, error) {
	k := &KEK{h: h, ref: ref}
	err := h.do(func(sh pkcs11.SessionHandle, gen uint64) error {
		handle, err := k.keyHandle(sh, gen)
		if err != nil {
			return err
		}
		if h.boolAttribute(sh, handle, pkcs11.CKA_EXTRACTABLE) != 0 || h.boolAttribute(sh, handle, pkcs11.CKA_SENSITIVE) != 1 {
			return fmt.Errorf("hsm: AES key %s on %s is extractable or not sensitive; create a KEK with ward hsm init", ref, h)
		}
		b, err := h.attribute(sh, handle, pkcs11.CKA_KEY_TYPE)
		if err != nil {
			return err
		}
		if kt, _ := ulong(b); kt != pkcs11.CKK_AES {
			return fmt.Errorf("hsm: key %s on %s has key type %s, want AES", ref, h, keyTypeName(kt))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// String names the KEK and its token for error messages.
func (k *KEK) String() string {
	return fmt.Sprintf("pkcs11 KEK %s on %s", k.ref, k.h)
}

// Encrypt seals plaintext with AES-GCM inside the token.
func (k *KEK) Encrypt(plaintext, associatedData []byte) ([]byte, error) {
	iv := make([]byte, gcmIVSize)
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("hsm: KEK IV: %v", err)
	}

	var out []byte
	err := k.h.do(func(sh pkcs11.SessionHandle, gen uint64) error {
		handle, err := k.keyHandle(sh, gen)
		if err != nil {
			return err
		}
		params := pkcs11.NewGCMParams(iv, associatedData, gcmTagSize*8)
		defer params.Free()
		if err := k.h.p11.EncryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, handle); err != nil {
			return err
		}
		ct, err := k.h.p11.Encrypt(sh, plaintext)
		if err != nil {
			return err
		}
		out = append(append(make([]byte, 0, gcmIVSize+len(ct)), iv...), ct...)
		return nil
	})
	if err != nil {
		return nil, k.wrap("encrypting", err)
	}
	return out, nil
}

// Decrypt opens a ciphertext produced by Encrypt with the same associated
// data.
func (k *KEK) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	if len(ciphertext) < gcmIVSize+gcmTagSize {
		return nil, fmt.Errorf("hsm: KEK ciphertext is %d bytes, shorter than IV and tag", len(ciphertext))
	}
	iv, body := ciphertext[:gcmIVSize], ciphertext[gcmIVSize:]

	var out []byte
	err := k.h.do(func(sh pkcs11.SessionHandle, gen uint64) error {
		handle, err := k.keyHandle(sh, gen)
		if err != nil {
			return err
		}
		params := pkcs11.NewGCMParams(iv, associatedData, gcmTagSize*8)
		defer params.Free()
		if err := k.h.p11.DecryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, handle); err != nil {
			return err
		}
		out, err = k.h.p11.Decrypt(sh, body)
		return err
	})
	if err != nil {
		return nil, k.wrap("decrypting", err)
	}
	return out, nil
}

// wrap adds the KEK's name to err unless err already names the token.
func (k *KEK) wrap(action string, err error) error {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrPINIncorrect) {
		return err
	}
	return fmt.Errorf("hsm: %s with %s: %w", action, k, err)
}

// keyHandle returns the key's object handle, searching again after a
// library reset.
func (k *KEK) keyHandle(sh pkcs11.SessionHandle, gen uint64) (pkcs11.ObjectHandle, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.found && k.gen == gen {
		return k.handle, nil
	}
	handle, err := k.h.findOne(sh, k.ref, pkcs11.CKO_SECRET_KEY)
	if err != nil {
		return 0, err
	}
	k.handle, k.gen, k.found = handle, gen, true
	return handle, nil
}
