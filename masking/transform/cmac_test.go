package transform_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tink-crypto/tink-go/v2/prf/subtle"

	"ward.dev/ward/masking/transform"
)

// TestCMACWycheproof runs Wycheproof's AES-CMAC vectors with full-length
// tags. Groups whose key size AES does not have expect an error.
func TestCMACWycheproof(t *testing.T) {
	var file struct {
		Groups []struct {
			KeySize int `json:"keySize"`
			TagSize int `json:"tagSize"`
			Tests   []struct {
				ID      int    `json:"tcId"`
				Comment string `json:"comment"`
				Key     string `json:"key"`
				Msg     string `json:"msg"`
				Tag     string `json:"tag"`
				Result  string `json:"result"`
			} `json:"tests"`
		} `json:"testGroups"`
	}
	loadWycheproof(t, "aes_cmac_test.json", "AES-CMAC", &file)
	ran := 0
	for _, g := range file.Groups {
		if g.TagSize != 128 {
			continue
		}
		for _, tc := range g.Tests {
			key, _ := hex.DecodeString(tc.Key)
			msg, _ := hex.DecodeString(tc.Msg)
			tag, _ := hex.DecodeString(tc.Tag)
			got, err := transform.CMAC(key, msg)
			ran++
			switch {
			case g.KeySize != 128 && g.KeySize != 192 && g.KeySize != 256:
				if err == nil {
					t.Errorf("tcId %d: a %d-bit key was accepted", tc.ID, g.KeySize)
				}
			case err != nil:
				t.Errorf("tcId %d: %v", tc.ID, err)
			case (tc.Result == "valid") != bytes.Equal(got, tag):
				t.Errorf("tcId %d (%s, %s): CMAC = %x, vector tag %x", tc.ID, tc.Comment, tc.Result, got, tag)
			}
		}
	}
	if ran < 300 {
		t.Fatalf("ran %d vectors, want the file's 300 or more", ran)
	}
}

// TestCMACExpandMatchesTink checks the e-mail pseudonym function against
// Tink's AES-CMAC PRF: block i of the output is the PRF of byte i and the
// parts, each after its length as a uvarint.
func TestCMACExpandMatchesTink(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		key := make([]byte, 32)
		for i := range key {
			key[i] = byte(r.Uint32())
		}
		parts := make([]string, 1+r.IntN(3))
		for i := range parts {
			parts[i] = strings.Repeat(string(rune('a'+r.IntN(26))), r.IntN(150))
		}
		n := 1 + r.IntN(40)

		got, err := transform.CMACExpand(key, n, parts...)
		if err != nil {
			t.Fatal(err)
		}
		prf, err := subtle.NewAESCMACPRF(key)
		if err != nil {
			t.Fatal(err)
		}
		var want []byte
		for i := 1; len(want) < n; i++ {
			in := []byte{byte(i)}
			for _, p := range parts {
				in = binary.AppendUvarint(in, uint64(len(p)))
				in = append(in, p...)
			}
			block, err := prf.ComputePRF(in, 16)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, block...)
		}
		if !bytes.Equal(got, want[:n]) {
			t.Fatalf("expand(%d bytes of %q) = %x, Tink gives %x", n, parts, got, want[:n])
		}
	}
}
