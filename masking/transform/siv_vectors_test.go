package transform_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"math/rand/v2"
	"testing"

	"github.com/c2sp/wycheproof"
	"github.com/tink-crypto/tink-go/v2/daead/subtle"

	"ward.dev/ward/masking/transform"
)

// TestAESSIVWycheproof runs Wycheproof's AES-SIV-CMAC vectors against the
// deterministic AEAD that tokenize composes (Tink's AES-SIV, RFC 5297), and
// the encryptions against the encrypter that tokenize runs. Tink
// supports only 512-bit AES-SIV keys (two AES-256 keys), so the groups with
// other key sizes are skipped and counted.
func TestAESSIVWycheproof(t *testing.T) {
	var file struct {
		Groups []struct {
			KeySize int `json:"keySize"`
			Tests   []struct {
				ID      int    `json:"tcId"`
				Comment string `json:"comment"`
				Key     string `json:"key"`
				AAD     string `json:"aad"`
				Msg     string `json:"msg"`
				CT      string `json:"ct"`
				Result  string `json:"result"`
			} `json:"tests"`
		} `json:"testGroups"`
	}
	loadWycheproof(t, "aes_siv_cmac_test.json", "AES-SIV-CMAC", &file)

	ran, skipped := 0, 0
	for _, g := range file.Groups {
		if g.KeySize != 512 {
			skipped += len(g.Tests)
			continue
		}
		for _, tc := range g.Tests {
			key, _ := hex.DecodeString(tc.Key)
			aad, _ := hex.DecodeString(tc.AAD)
			msg, _ := hex.DecodeString(tc.Msg)
			ct, _ := hex.DecodeString(tc.CT)
			siv, err := subtle.NewAESSIV(key)
			if err != nil {
				t.Fatalf("tcId %d: NewAESSIV: %v", tc.ID, err)
			}
			ran++

			got, err := siv.DecryptDeterministically(ct, aad)
			switch tc.Result {
			case "valid":
				if err != nil || !bytes.Equal(got, msg) {
					t.Errorf("tcId %d (%s): Decrypt = %x, %v, want %x", tc.ID, tc.Comment, got, err, msg)
				}
				enc, err := siv.EncryptDeterministically(msg, aad)
				if err != nil || !bytes.Equal(enc, ct) {
					t.Errorf("tcId %d (%s): Encrypt = %x, %v, want %x", tc.ID, tc.Comment, enc, err, ct)
				}
				enc, err = transform.SIVEncrypt(key, aad, string(msg))
				if err != nil || !bytes.Equal(enc, ct) {
					t.Errorf("tcId %d (%s): SIVEncrypt = %x, %v, want %x", tc.ID, tc.Comment, enc, err, ct)
				}
			case "invalid":
				if err == nil {
					t.Errorf("tcId %d (%s): Decrypt of an invalid ciphertext succeeded", tc.ID, tc.Comment)
				}
			}
		}
	}
	if ran == 0 {
		t.Fatal("no 512-bit AES-SIV vectors ran")
	}
	t.Logf("ran %d AES-SIV vectors, skipped %d with key sizes Tink does not support", ran, skipped)
}

// TestSIVEncryptMatchesTink compares the tokenize encrypter with Tink's
// AES-SIV on random keys, associated data and plaintexts of 0 to 300 bytes.
func TestSIVEncryptMatchesTink(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	for n := range 301 {
		key, ad, msg := random(64), random(r.IntN(40)), random(n)
		siv, err := subtle.NewAESSIV(key)
		if err != nil {
			t.Fatal(err)
		}
		want, err := siv.EncryptDeterministically(msg, ad)
		if err != nil {
			t.Fatal(err)
		}
		got, err := transform.SIVEncrypt(key, ad, string(msg))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("SIVEncrypt(%d-byte message) = %x, %v, want %x", n, got, err, want)
		}
	}
}

// loadWycheproof decodes the Wycheproof vector file name into file, a
// struct with the fields a test needs, after checking that the file is
// for algorithm.
func loadWycheproof(t *testing.T, name, algorithm string, file any) {
	t.Helper()
	raw, err := fs.ReadFile(wycheproof.TestVectors, name)
	if err != nil {
		t.Fatal(err)
	}
	var head struct {
		Algorithm string `json:"algorithm"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if head.Algorithm != algorithm {
		t.Fatalf("%s: algorithm = %q, want %s", name, head.Algorithm, algorithm)
	}
	if err := json.Unmarshal(raw, file); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}
