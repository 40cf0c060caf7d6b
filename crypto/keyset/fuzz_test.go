package keyset

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"ward.dev/ward/crypto/kek"
)

// fuzzKEKBytes is a fixed test KEK, so failures reproduce with the same key.
var fuzzKEKBytes = bytes.Repeat([]byte{0x5a}, kek.LocalKeySize)

// FuzzOpen feeds arbitrary bytes to Open as the sealed keyset file. Open must
// not panic, and a file it accepts must give a working keyset.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	k, err := kek.CreateLocal(filepath.Join(dir, "kek"), bytes.NewReader(fuzzKEKBytes))
	if err != nil {
		f.Fatal(err)
	}
	if _, err := Create(filepath.Join(dir, "keyset.bin"), k); err != nil {
		f.Fatal(err)
	}
	valid, err := os.ReadFile(filepath.Join(dir, "keyset.bin"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte{})
	f.Add(valid[:len(valid)/2])

	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "keyset.bin")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		ks, err := Open(path, k)
		if err != nil {
			return
		}
		ct, err := ks.Encrypt([]byte("x"), nil)
		if err != nil {
			t.Fatalf("Encrypt with an accepted keyset error: %v", err)
		}
		if pt, err := ks.Decrypt(ct, nil); err != nil || string(pt) != "x" {
			t.Fatalf("Decrypt(Encrypt(x)) with an accepted keyset = %q, %v", pt, err)
		}
	})
}

// FuzzReadUsage feeds arbitrary bytes to readUsage as the usage file. It must
// not panic, and a file it accepts must survive a write and read unchanged.
func FuzzReadUsage(f *testing.F) {
	f.Add([]byte(`{"version":1,"keys":[{"id":7,"created":"2026-01-01T00:00:00Z","encryptions":65536}]}`))
	f.Add([]byte(`{"version":1,"keys":[{"id":7,"created":"2026-01-01T00:00:00Z","encryptions":1,"estimated":true},{"id":9}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`[]`))

	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "keyset.bin")
		if err := os.WriteFile(path+usageSuffix, data, 0o600); err != nil {
			t.Fatal(err)
		}
		entries, err := readUsage(path)
		if err != nil {
			return
		}

		ids := make([]uint32, 0, len(entries))
		for id := range entries {
			ids = append(ids, id)
		}
		if err := writeUsage(path, entries, ids); err != nil {
			t.Fatalf("writeUsage of accepted entries error: %v", err)
		}
		again, err := readUsage(path)
		if err != nil {
			t.Fatalf("readUsage of rewritten entries error: %v", err)
		}
		for id, e := range entries {
			got := again[id]
			if got.Encryptions != e.Encryptions || !got.Created.Equal(e.Created) || got.Estimated != e.Estimated {
				t.Fatalf("usage entry %d after rewrite = %+v, want %+v", id, got, e)
			}
		}
	})
}
