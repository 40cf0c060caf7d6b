// Package gcmvectors loads the Wycheproof AES-GCM test vectors
// (aes_gcm_test.json from github.com/c2sp/wycheproof) for the tests of ward's
// AEADs. Only test code imports it.
package gcmvectors

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"

	"github.com/c2sp/wycheproof"
)

// Vector is one AES-GCM test case with its fields decoded from hex.
type Vector struct {
	ID      int
	Comment string
	Key     []byte
	IV      []byte
	AAD     []byte
	Msg     []byte
	CT      []byte // ciphertext without the tag
	Tag     []byte
	Valid   bool // false when the result is "invalid"
}

type file struct {
	Algorithm string `json:"algorithm"`
	Groups    []struct {
		IVSize  int `json:"ivSize"`
		KeySize int `json:"keySize"`
		TagSize int `json:"tagSize"`
		Tests   []struct {
			ID      int    `json:"tcId"`
			Comment string `json:"comment"`
			Key     string `json:"key"`
			IV      string `json:"iv"`
			AAD     string `json:"aad"`
			Msg     string `json:"msg"`
			CT      string `json:"ct"`
			Tag     string `json:"tag"`
			Result  string `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// Load returns the vectors whose IV is ivBytes long and whose tag is tagBytes
// long, with a key of one of keyBytes lengths, and how many vectors it
// skipped because their sizes did not match.
func Load(ivBytes, tagBytes int, keyBytes ...int) (vectors []Vector, skipped int, err error) {
	raw, err := fs.ReadFile(wycheproof.TestVectors, "aes_gcm_test.json")
	if err != nil {
		return nil, 0, fmt.Errorf("gcmvectors: %w", err)
	}
	var f file
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, 0, fmt.Errorf("gcmvectors: aes_gcm_test.json: %w", err)
	}
	if f.Algorithm != "AES-GCM" {
		return nil, 0, fmt.Errorf("gcmvectors: algorithm %q, want AES-GCM", f.Algorithm)
	}

	for _, g := range f.Groups {
		match := g.IVSize == ivBytes*8 && g.TagSize == tagBytes*8 && containsInt(keyBytes, g.KeySize/8)
		if !match {
			skipped += len(g.Tests)
			continue
		}
		for _, tc := range g.Tests {
			v := Vector{ID: tc.ID, Comment: tc.Comment, Valid: tc.Result == "valid"}
			fields := []struct {
				dst *[]byte
				src string
			}{{&v.Key, tc.Key}, {&v.IV, tc.IV}, {&v.AAD, tc.AAD}, {&v.Msg, tc.Msg}, {&v.CT, tc.CT}, {&v.Tag, tc.Tag}}
			for _, fl := range fields {
				b, err := hex.DecodeString(fl.src)
				if err != nil {
					return nil, 0, fmt.Errorf("gcmvectors: tcId %d: %w", tc.ID, err)
				}
				*fl.dst = b
			}
			vectors = append(vectors, v)
		}
	}
	return vectors, skipped, nil
}

func containsInt(list []int, x int) bool {
	for _, v := range list {
		if v == x {
			return true
		}
	}
	return false
}
