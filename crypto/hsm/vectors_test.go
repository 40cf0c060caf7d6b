package hsm

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/miekg/pkcs11"

	"ward.dev/ward/crypto/internal/gcmvectors"
)

// TestKEKWycheproof imports the key of each Wycheproof AES-256-GCM vector
// with a 12-byte IV and 16-byte tag into the token as a session object and
// runs the vector through KEK.Decrypt, so the KEK's IV || ciphertext || tag
// layout and the token's CKM_AES_GCM agree with the published results.
func TestKEKWycheproof(t *testing.T) {
	vectors, _, err := gcmvectors.Load(12, 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	tok := newTestToken(t, "vectors")
	h := openTestHSM(t, tok.cfg)

	for _, v := range vectors {
		label := fmt.Sprintf("wycheproof-%d", v.ID)
		err := h.do(func(sh pkcs11.SessionHandle, _ uint64) error {
			_, err := h.p11.CreateObject(sh, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
				pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
				pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
				pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
				pkcs11.NewAttribute(pkcs11.CKA_VALUE, v.Key),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			})
			return err
		})
		if err != nil {
			t.Fatalf("tcId %d: importing key: %v", v.ID, err)
		}
		k, err := h.KEK(KeyRef{Label: label})
		if err != nil {
			t.Fatalf("tcId %d: KEK error: %v", v.ID, err)
		}

		got, err := k.Decrypt(slices.Concat(v.IV, v.CT, v.Tag), v.AAD)
		switch {
		case v.Valid && err != nil:
			t.Errorf("tcId %d (%s): Decrypt error = %v, want %x", v.ID, v.Comment, err, v.Msg)
		case v.Valid && !bytes.Equal(got, v.Msg):
			t.Errorf("tcId %d (%s): Decrypt = %x, want %x", v.ID, v.Comment, got, v.Msg)
		case !v.Valid && err == nil:
			t.Errorf("tcId %d (%s): Decrypt of an invalid vector error = nil, want an error", v.ID, v.Comment)
		}
	}
}
