package hsm

import (
	"encoding/asn1"
	"testing"
)

// FuzzParseECPublicKey feeds arbitrary CKA_EC_PARAMS and CKA_EC_POINT values,
// as a token would return them, to parseECPublicKey. It must not panic, and a
// key it accepts must lie on P-256 or P-384.
func FuzzParseECPublicKey(f *testing.F) {
	p256, _ := asn1.Marshal(oidP256)
	p384, _ := asn1.Marshal(oidP384)
	point := append([]byte{0x04}, make([]byte, 64)...)
	wrapped, _ := asn1.Marshal(point)
	f.Add(p256, wrapped)
	f.Add(p384, point)
	f.Add([]byte{0x06, 0x00}, []byte{0x04})
	f.Add([]byte{}, []byte{})

	f.Fuzz(func(t *testing.T, params, point []byte) {
		pub, err := parseECPublicKey(params, point)
		if err != nil {
			return
		}
		name := pub.Curve.Params().Name
		if name != "P-256" && name != "P-384" {
			t.Fatalf("parseECPublicKey accepted a key on %s", name)
		}
	})
}
