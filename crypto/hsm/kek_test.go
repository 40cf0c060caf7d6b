package hsm

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"ward.dev/ward/crypto/kek"
	"ward.dev/ward/crypto/keyset"
)

func openTestKEK(t *testing.T, h *HSM) *KEK {
	t.Helper()
	k, err := h.KEK(KeyRef{Label: DefaultKEKLabel})
	if err != nil {
		t.Fatalf("KEK(%s) error: %v", DefaultKEKLabel, err)
	}
	return k
}

func TestKEKRoundTripAndTampering(t *testing.T) {
	tok := newTestToken(t, "kek")
	h := openTestHSM(t, tok.cfg)
	initKeys(t, h)
	k := openTestKEK(t, h)
	aad := []byte("keyset.bin")

	ct, err := k.Encrypt([]byte("serialized keyset"), aad)
	if err != nil {
		t.Fatalf("Encrypt error: %v", err)
	}
	pt, err := k.Decrypt(ct, aad)
	if err != nil || string(pt) != "serialized keyset" {
		t.Fatalf("Decrypt = %q, %v, want the plaintext", pt, err)
	}
	if _, err := k.Decrypt(ct, []byte("other")); err == nil {
		t.Errorf("Decrypt with wrong associated data error = nil, want an error")
	}

	genBefore, _ := h.lib.state()
	for i := range len(ct) * 8 {
		flipped := bytes.Clone(ct)
		flipped[i/8] ^= 1 << (i % 8)
		if _, err := k.Decrypt(flipped, aad); err == nil {
			t.Fatalf("Decrypt(bit %d flipped) error = nil, want an error", i)
		} else if errors.Is(err, kek.ErrSealed) {
			t.Fatalf("Decrypt(bit %d flipped) error = %v, want an authentication failure, not kek.ErrSealed", i, err)
		}
	}
	for n := range len(ct) {
		if _, err := k.Decrypt(ct[:n], aad); err == nil {
			t.Fatalf("Decrypt(truncated to %d bytes) error = nil, want an error", n)
		}
	}
	if gen, _ := h.lib.state(); gen != genBefore {
		t.Errorf("tampered ciphertexts reset the library %d times, want 0", gen-genBefore)
	}
}

func TestKEKRejectsExtractableKey(t *testing.T) {
	tok := newTestToken(t, "extractable")
	h := openTestHSM(t, tok.cfg)
	err := h.do(func(sh pkcs11.SessionHandle, _ uint64) error {
		_, err := h.p11.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, "weak"),
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := h.KEK(KeyRef{Label: "weak"}); err == nil || !strings.Contains(err.Error(), "extractable") {
		t.Errorf("KEK(extractable key) error = %v, want a rejection naming extractable", err)
	}
}

func TestKeysetSealedByHSM(t *testing.T) {
	tok := newTestToken(t, "sealer")
	h := openTestHSM(t, tok.cfg)
	initKeys(t, h)
	k := openTestKEK(t, h)

	path := filepath.Join(t.TempDir(), "keyset.bin")
	ks, err := keyset.Create(path, k)
	if err != nil {
		t.Fatalf("keyset.Create with the HSM KEK error: %v", err)
	}
	ct, err := ks.Encrypt([]byte("CA key"), nil)
	if err != nil {
		t.Fatal(err)
	}

	// A local KEK cannot open a keyset that the HSM sealed.
	local, err := kek.CreateLocal(filepath.Join(t.TempDir(), "kek"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keyset.Open(path, local); !errors.Is(err, kek.ErrSealed) {
		t.Errorf("keyset.Open with a local KEK error = %v, want kek.ErrSealed", err)
	}

	// Without the token the keyset stays sealed, both for a running HSM and
	// for one opened afterwards.
	away := tok.tokenDir + ".away"
	if err := os.Rename(tok.tokenDir, away); err != nil {
		t.Fatal(err)
	}
	_, err = keyset.Open(path, k)
	if !errors.Is(err, kek.ErrSealed) || !strings.Contains(err.Error(), `"sealer"`) {
		t.Errorf("keyset.Open with the token gone error = %v, want kek.ErrSealed naming token \"sealer\"", err)
	}
	_, err = Open(tok.cfg)
	if !errors.Is(err, kek.ErrSealed) || !strings.Contains(err.Error(), `"sealer"`) {
		t.Errorf("Open with the token gone error = %v, want kek.ErrSealed naming token \"sealer\"", err)
	}

	if err := os.Rename(away, tok.tokenDir); err != nil {
		t.Fatal(err)
	}
	reopened, err := keyset.Open(path, k)
	if err != nil {
		t.Fatalf("keyset.Open after the token came back error: %v", err)
	}
	if pt, err := reopened.Decrypt(ct, nil); err != nil || string(pt) != "CA key" {
		t.Errorf("Decrypt after the token came back = %q, %v, want %q", pt, err, "CA key")
	}
}

func TestRotateRewrapLocalHSMLocal(t *testing.T) {
	tok := newTestToken(t, "rewrap")
	h := openTestHSM(t, tok.cfg)
	initKeys(t, h)
	hsmKEK := openTestKEK(t, h)
	dir := t.TempDir()
	local1, err := kek.CreateLocal(filepath.Join(dir, "kek1"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	local2, err := kek.CreateLocal(filepath.Join(dir, "kek2"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(dir, "keyset.bin")
	ks, err := keyset.Create(path, local1)
	if err != nil {
		t.Fatal(err)
	}
	var ciphertexts [][]byte
	encrypt := func(step string) {
		t.Helper()
		ct, err := ks.Encrypt([]byte(step), []byte(step))
		if err != nil {
			t.Fatalf("%s: Encrypt error: %v", step, err)
		}
		ciphertexts = append(ciphertexts, ct)
	}
	reopen := func(step string, current kek.KEK, stale kek.KEK) {
		t.Helper()
		if _, err := keyset.Open(path, stale); !errors.Is(err, kek.ErrSealed) {
			t.Errorf("%s: Open with the previous KEK error = %v, want kek.ErrSealed", step, err)
		}
		ks, err = keyset.Open(path, current)
		if err != nil {
			t.Fatalf("%s: Open error: %v", step, err)
		}
	}

	steps := []struct {
		name string
		run  func() error
	}{
		{"local", func() error { return nil }},
		{"rotate under local", func() error { _, err := ks.Rotate(); return err }},
		{"rewrap to pkcs11", func() error { return ks.Rewrap(hsmKEK) }},
		{"rotate under pkcs11", func() error { _, err := ks.Rotate(); return err }},
		{"rewrap to local", func() error { return ks.Rewrap(local2) }},
	}
	for _, step := range steps {
		if err := step.run(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		switch step.name {
		case "rewrap to pkcs11":
			reopen(step.name, hsmKEK, local1)
		case "rewrap to local":
			reopen(step.name, local2, hsmKEK)
		}
		encrypt(step.name)
	}

	if n := len(ks.Status().Keys); n != 3 {
		t.Errorf("Status().Keys after two rotations = %d, want 3", n)
	}
	for i, ct := range ciphertexts {
		step := steps[i].name
		pt, err := ks.Decrypt(ct, []byte(step))
		if err != nil || string(pt) != step {
			t.Errorf("Decrypt(ciphertext of step %q) = %q, %v, want %q", step, pt, err, step)
		}
	}
}
