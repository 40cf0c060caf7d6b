package hsm

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/miekg/pkcs11"
)

// maxObjects bounds one search, so a token full of objects cannot exhaust
// memory.
const maxObjects = 10000

// KeyRef names a key on the token by CKA_LABEL, by CKA_ID, or by both. An
// empty field is not part of the search.
type KeyRef struct {
	Label string
	ID    []byte
}

func (r KeyRef) String() string {
	switch {
	case r.Label != "" && len(r.ID) > 0:
		return fmt.Sprintf("label %q id %x", r.Label, r.ID)
	case len(r.ID) > 0:
		return fmt.Sprintf("id %x", r.ID)
	}
	return fmt.Sprintf("label %q", r.Label)
}

// template returns the search attributes of r for objects of class.
func (r KeyRef) template(class uint) []*pkcs11.Attribute {
	attrs := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}
	if r.Label != "" {
		attrs = append(attrs, pkcs11.NewAttribute(pkcs11.CKA_LABEL, r.Label))
	}
	if len(r.ID) > 0 {
		attrs = append(attrs, pkcs11.NewAttribute(pkcs11.CKA_ID, r.ID))
	}
	return attrs
}

// findObjects returns the handles of the objects that match template.
func (h *HSM) findObjects(sh pkcs11.SessionHandle, template []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := h.p11.FindObjectsInit(sh, template); err != nil {
		return nil, err
	}
	var all []pkcs11.ObjectHandle
	for {
		batch, _, err := h.p11.FindObjects(sh, 100)
		if err != nil {
			_ = h.p11.FindObjectsFinal(sh)
			return nil, err
		}
		all = append(all, batch...)
		if len(batch) == 0 || len(all) >= maxObjects {
			break
		}
	}
	if err := h.p11.FindObjectsFinal(sh); err != nil {
		return nil, err
	}
	return all, nil
}

// findOne returns the single object of class that ref names.
func (h *HSM) findOne(sh pkcs11.SessionHandle, ref KeyRef, class uint) (pkcs11.ObjectHandle, error) {
	if ref.Label == "" && len(ref.ID) == 0 {
		return 0, fmt.Errorf("hsm: key reference needs a label or an id")
	}
	found, err := h.findObjects(sh, ref.template(class))
	if err != nil {
		return 0, err
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("%w: %s on %s", ErrKeyNotFound, ref, h)
	case 1:
		return found[0], nil
	}
	return 0, fmt.Errorf("hsm: %d objects match %s on %s; name the key by id as well", len(found), ref, h)
}

// attribute reads one attribute. Attributes that a class does not have, or
// that the token keeps secret, return an error.
func (h *HSM) attribute(sh pkcs11.SessionHandle, obj pkcs11.ObjectHandle, typ uint) ([]byte, error) {
	attrs, err := h.p11.GetAttributeValue(sh, obj, []*pkcs11.Attribute{pkcs11.NewAttribute(typ, nil)})
	if err != nil {
		return nil, err
	}
	if len(attrs) != 1 {
		return nil, fmt.Errorf("hsm: token returned %d attributes, want 1", len(attrs))
	}
	return attrs[0].Value, nil
}

// ulong decodes a CK_ULONG attribute, which PKCS#11 stores in host order.
func ulong(b []byte) (uint, bool) {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b)), true
	case 4:
		return uint(binary.NativeEndian.Uint32(b)), true
	}
	return 0, false
}

// Object describes an object on the token. It contains no key material.
type Object struct {
	Class       string `json:"class"`    // private-key, public-key, secret-key or the CKO_ number
	KeyType     string `json:"key_type"` // EC, RSA, AES or the CKK_ number
	Label       string `json:"label"`
	ID          string `json:"id"` // CKA_ID in hex
	Token       bool   `json:"token"`
	Private     bool   `json:"private"`
	Sensitive   *bool  `json:"sensitive,omitempty"`   // only for private and secret keys
	Extractable *bool  `json:"extractable,omitempty"` // only for private and secret keys
}

// describeObject reads the attributes of obj that Object shows. Each is read
// on its own, because a token fails a whole C_GetAttributeValue call when one
// attribute does not apply to the object's class.
func (h *HSM) describeObject(sh pkcs11.SessionHandle, obj pkcs11.ObjectHandle) (Object, error) {
	var o Object
	class, err := h.attribute(sh, obj, pkcs11.CKA_CLASS)
	if err != nil {
		return o, err
	}
	classNum, _ := ulong(class)
	o.Class = className(classNum)
	if b, err := h.attribute(sh, obj, pkcs11.CKA_KEY_TYPE); err == nil {
		if kt, ok := ulong(b); ok {
			o.KeyType = keyTypeName(kt)
		}
	}
	if b, err := h.attribute(sh, obj, pkcs11.CKA_LABEL); err == nil {
		o.Label = string(b)
	}
	if b, err := h.attribute(sh, obj, pkcs11.CKA_ID); err == nil {
		o.ID = hex.EncodeToString(b)
	}
	o.Token = h.boolAttribute(sh, obj, pkcs11.CKA_TOKEN) == 1
	o.Private = h.boolAttribute(sh, obj, pkcs11.CKA_PRIVATE) == 1
	if classNum == pkcs11.CKO_PRIVATE_KEY || classNum == pkcs11.CKO_SECRET_KEY {
		if v := h.boolAttribute(sh, obj, pkcs11.CKA_SENSITIVE); v >= 0 {
			b := v == 1
			o.Sensitive = &b
		}
		if v := h.boolAttribute(sh, obj, pkcs11.CKA_EXTRACTABLE); v >= 0 {
			b := v == 1
			o.Extractable = &b
		}
	}
	return o, nil
}

// boolAttribute returns 1 for true, 0 for false and -1 when unreadable.
func (h *HSM) boolAttribute(sh pkcs11.SessionHandle, obj pkcs11.ObjectHandle, typ uint) int {
	b, err := h.attribute(sh, obj, typ)
	if err != nil || len(b) != 1 {
		return -1
	}
	if b[0] != 0 {
		return 1
	}
	return 0
}

func className(c uint) string {
	switch c {
	case pkcs11.CKO_PRIVATE_KEY:
		return "private-key"
	case pkcs11.CKO_PUBLIC_KEY:
		return "public-key"
	case pkcs11.CKO_SECRET_KEY:
		return "secret-key"
	case pkcs11.CKO_CERTIFICATE:
		return "certificate"
	case pkcs11.CKO_DATA:
		return "data"
	}
	return fmt.Sprintf("CKO_%#x", c)
}

func keyTypeName(k uint) string {
	switch k {
	case pkcs11.CKK_EC:
		return "EC"
	case pkcs11.CKK_RSA:
		return "RSA"
	case pkcs11.CKK_AES:
		return "AES"
	}
	return fmt.Sprintf("CKK_%#x", k)
}
