package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"

	"ward.dev/ward/crypto/kek"
	"ward.dev/ward/crypto/secret"
)

// checkNoPIN fails the test when err contains the test PIN.
func checkNoPIN(t *testing.T, err error) {
	t.Helper()
	if err != nil && (strings.Contains(err.Error(), testPIN) || strings.Contains(err.Error(), "wrong-pin")) {
		t.Errorf("error contains a PIN: %v", err)
	}
}

func initKeys(t *testing.T, h *HSM) {
	t.Helper()
	if _, err := h.InitKeys(InitOptions{}); err != nil {
		t.Fatalf("InitKeys error: %v", err)
	}
}

func TestInitKeysAttributes(t *testing.T) {
	tok := newTestToken(t, "attrs")
	h := openTestHSM(t, tok.cfg)
	created, err := h.InitKeys(InitOptions{})
	if err != nil {
		t.Fatalf("InitKeys error: %v", err)
	}
	if len(created) != 3 {
		t.Fatalf("InitKeys created %d objects, want 3", len(created))
	}

	for _, o := range created {
		if !o.Token {
			t.Errorf("%s %s: CKA_TOKEN = false, want true", o.Class, o.Label)
		}
		if o.Class == "public-key" {
			continue
		}
		if !o.Private {
			t.Errorf("%s %s: CKA_PRIVATE = false, want true", o.Class, o.Label)
		}
		if o.Sensitive == nil || !*o.Sensitive {
			t.Errorf("%s %s: CKA_SENSITIVE = %v, want true", o.Class, o.Label, o.Sensitive)
		}
		if o.Extractable == nil || *o.Extractable {
			t.Errorf("%s %s: CKA_EXTRACTABLE = %v, want false", o.Class, o.Label, o.Extractable)
		}
	}

	// The token must refuse to reveal the secret values.
	refs := []struct {
		ref   KeyRef
		class uint
	}{
		{KeyRef{Label: DefaultCALabel}, pkcs11.CKO_PRIVATE_KEY},
		{KeyRef{Label: DefaultKEKLabel}, pkcs11.CKO_SECRET_KEY},
	}
	for _, r := range refs {
		err := h.do(func(sh pkcs11.SessionHandle, _ uint64) error {
			obj, err := h.findOne(sh, r.ref, r.class)
			if err != nil {
				return err
			}
			for _, attr := range []uint{pkcs11.CKA_VALUE} {
				if v, err := h.attribute(sh, obj, attr); err == nil {
					return fmt.Errorf("reading CKA_VALUE of %s returned %d bytes, want CKR_ATTRIBUTE_SENSITIVE", r.ref, len(v))
				} else if !isCode(err, pkcs11.CKR_ATTRIBUTE_SENSITIVE) {
					return fmt.Errorf("reading CKA_VALUE of %s error = %v, want CKR_ATTRIBUTE_SENSITIVE", r.ref, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
}

func TestInitKeysTwice(t *testing.T) {
	tok := newTestToken(t, "twice")
	h := openTestHSM(t, tok.cfg)
	initKeys(t, h)

	if _, err := h.InitKeys(InitOptions{}); !errors.Is(err, ErrExists) {
		t.Errorf("second InitKeys error = %v, want ErrExists", err)
	}
	objects, err := h.List("ward-")
	if err != nil {
		t.Fatalf("List error: %v", err)
	}
	if len(objects) != 3 {
		t.Errorf("List(ward-) after a rejected InitKeys = %d objects, want 3", len(objects))
	}
}

func TestListFiltersByPrefix(t *testing.T) {
	tok := newTestToken(t, "list")
	h := openTestHSM(t, tok.cfg)
	initKeys(t, h)
	if _, err := h.InitKeys(InitOptions{CALabel: "other-ca", KEKLabel: "other-kek"}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		prefix string
		want   int
	}{{"ward-", 3}, {"other-", 3}, {"", 6}, {"none", 0}}
	for _, tt := range tests {
		objects, err := h.List(tt.prefix)
		if err != nil {
			t.Fatalf("List(%q) error: %v", tt.prefix, err)
		}
		if len(objects) != tt.want {
			t.Errorf("List(%q) = %d objects, want %d", tt.prefix, len(objects), tt.want)
		}
	}
}

// generateKeyPair creates a signing key pair on the token for tests.
func generateKeyPair(t *testing.T, h *HSM, label string, mech uint, public []*pkcs11.Attribute) {
	t.Helper()
	id := []byte(label)
	public = append(public,
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	)
	private := append(secretKeyAttributes(label, id), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true))
	err := h.do(func(sh pkcs11.SessionHandle, _ uint64) error {
		_, _, err := h.p11.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, public, private)
		return err
	})
	if err != nil {
		t.Fatalf("generating %s: %v", label, err)
	}
}

func TestSignerAlgorithms(t *testing.T) {
	tok := newTestToken(t, "sign")
	h := openTestHSM(t, tok.cfg)
	initKeys(t, h)
	p384, err := asn1.Marshal(oidP384)
	if err != nil {
		t.Fatal(err)
	}
	generateKeyPair(t, h, "p384", pkcs11.CKM_EC_KEY_PAIR_GEN, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, p384)})
	generateKeyPair(t, h, "rsa", pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, 2048),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
	})

	msg := []byte("certificate to be signed")
	d256 := sha256.Sum256(msg)
	d384 := sha512.Sum384(msg)
	tests := []struct {
		name   string
		ref    KeyRef
		digest []byte
		opts   crypto.SignerOpts
	}{
		{"ECDSA P-256 by label", KeyRef{Label: DefaultCALabel}, d256[:], crypto.SHA256},
		{"ECDSA P-384 by id", KeyRef{ID: []byte("p384")}, d384[:], crypto.SHA384},
		{"RSA PKCS1v15 SHA-256", KeyRef{Label: "rsa"}, d256[:], crypto.SHA256},
		{"RSA PSS SHA-256", KeyRef{Label: "rsa"}, d256[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}},
		{"RSA PSS auto salt", KeyRef{Label: "rsa"}, d384[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: crypto.SHA384}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := h.Signer(tt.ref)
			if err != nil {
				t.Fatalf("Signer(%s) error: %v", tt.ref, err)
			}
			sig, err := s.Sign(nil, tt.digest, tt.opts)
			if err != nil {
				t.Fatalf("Sign error: %v", err)
			}

			switch pub := s.Public().(type) {
			case *ecdsa.PublicKey:
				if !ecdsa.VerifyASN1(pub, tt.digest, sig) {
					t.Errorf("ecdsa.VerifyASN1 of the token's signature = false, want true")
				}
			case *rsa.PublicKey:
				if pss, ok := tt.opts.(*rsa.PSSOptions); ok {
					err = rsa.VerifyPSS(pub, pss.Hash, tt.digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
				} else {
					err = rsa.VerifyPKCS1v15(pub, tt.opts.HashFunc(), tt.digest, sig)
				}
				if err != nil {
					t.Errorf("RSA verification of the token's signature error: %v", err)
				}
			default:
				t.Fatalf("Public() = %T, want an ECDSA or RSA key", pub)
			}
		})
	}
}

func TestSignerRejects(t *testing.T) {
	tok := newTestToken(t, "reject")
	h := openTestHSM(t, tok.cfg)
	initKeys(t, h)

	if _, err := h.Signer(KeyRef{Label: "missing"}); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("Signer(missing) error = %v, want ErrKeyNotFound", err)
	}
	s, err := h.Signer(KeyRef{Label: DefaultCALabel})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(nil, []byte("too short"), crypto.SHA256); err == nil {
		t.Errorf("Sign(digest of the wrong length) error = nil, want an error")
	}
}

func TestWrongPIN(t *testing.T) {
	tok := newTestToken(t, "wrongpin")
	cfg := tok.cfg
	cfg.PIN = secret.New([]byte("wrong-pin-X4"))

	var fm *faultModule
	_, err := open(cfg, withModule(func(m module) module {
		fm = &faultModule{module: m}
		return fm
	}))
	if !errors.Is(err, ErrPINIncorrect) {
		t.Fatalf("Open(wrong PIN) error = %v, want ErrPINIncorrect", err)
	}
	if !strings.Contains(err.Error(), `"wrongpin"`) {
		t.Errorf("Open(wrong PIN) error = %q, want it to name the token", err)
	}
	checkNoPIN(t, err)
	if n := fm.logins.Load(); n != 1 {
		t.Errorf("Open(wrong PIN) called C_Login %d times, want 1", n)
	}

	// One failed login must not lock the token.
	h := openTestHSM(t, tok.cfg)
	if _, err := h.List(""); err != nil {
		t.Errorf("List with the right PIN after one wrong PIN error: %v", err)
	}
}

func TestWrongPINIsFinal(t *testing.T) {
	tok := newTestToken(t, "final")
	h, fm := openFaultyHSM(t, tok.cfg)
	initKeys(t, h)
	s, err := h.Signer(KeyRef{Label: DefaultCALabel})
	if err != nil {
		t.Fatal(err)
	}

	// The token logs the user out and the PIN no longer works, as after a
	// PIN change by the security officer.
	h.mu.Lock()
	h.cfg.PIN = secret.New([]byte("wrong-pin-X4"))
	h.mu.Unlock()
	logout(t, h)
	digest := sha256.Sum256([]byte("x"))
	logins := fm.logins.Load()

	for range 3 {
		_, err := s.Sign(nil, digest[:], crypto.SHA256)
		if !errors.Is(err, ErrPINIncorrect) {
			t.Fatalf("Sign after a rejected PIN error = %v, want ErrPINIncorrect", err)
		}
		checkNoPIN(t, err)
	}
	if n := fm.logins.Load() - logins; n != 1 {
		t.Errorf("three Sign calls after a rejected PIN called C_Login %d times, want 1", n)
	}
}

func TestReloginAfterLogout(t *testing.T) {
	tok := newTestToken(t, "relogin")
	h, fm := openFaultyHSM(t, tok.cfg)
	initKeys(t, h)
	s, err := h.Signer(KeyRef{Label: DefaultCALabel})
	if err != nil {
		t.Fatal(err)
	}
	logins := fm.logins.Load()

	logout(t, h)
	digest := sha256.Sum256([]byte("x"))
	sig, err := s.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign after a logout error: %v", err)
	}
	if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Errorf("signature after re-login does not verify")
	}
	if n := fm.logins.Load() - logins; n != 1 {
		t.Errorf("Sign after a logout called C_Login %d times, want 1", n)
	}
}

// logout logs the user out of the token with C_Logout, which ends the
// login of every session of the process.
func logout(t *testing.T, h *HSM) {
	t.Helper()
	err := h.do(func(sh pkcs11.SessionHandle, _ uint64) error {
		return h.lib.ctx.Logout(sh)
	})
	if err != nil {
		t.Fatalf("C_Logout error: %v", err)
	}
}

func TestSessionPoolBounded(t *testing.T) {
	tok := newTestToken(t, "pool")
	cfg := tok.cfg
	cfg.Sessions = 2
	h, fm := openFaultyHSM(t, cfg)
	initKeys(t, h)
	s, err := h.Signer(KeyRef{Label: DefaultCALabel})
	if err != nil {
		t.Fatal(err)
	}

	digest := sha256.Sum256([]byte("x"))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				if _, err := s.Sign(nil, digest[:], crypto.SHA256); err != nil {
					t.Errorf("Sign error: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := fm.maxOpenSession.Load(); n > 2 {
		t.Errorf("8 goroutines opened up to %d sessions, want at most 2", n)
	}
}

func TestPINFromFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		path := dir + "/" + name
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		return path
	}

	tests := []struct {
		name    string
		path    string
		want    string
		wantErr string
	}{
		{"newline stripped", write("a", "s3cret\n", 0o600), "s3cret", ""},
		{"crlf stripped", write("b", "s3cret\r\n", 0o400), "s3cret", ""},
		{"no newline", write("c", "s3cret", 0o600), "s3cret", ""},
		{"group readable", write("d", "s3cret\n", 0o640), "", "mode 0640"},
		{"empty", write("e", "\n", 0o600), "", "empty"},
		{"two lines", write("f", "s3cret\nmore\n", 0o600), "", "line break"},
		{"too long", write("g", strings.Repeat("x", 300), 0o600), "", "longer than"},
		{"missing", dir + "/none", "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pin, err := PINFromFile(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("PINFromFile(%s) error = %v, want one containing %q", tt.name, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("PINFromFile(%s) error contains the PIN: %v", tt.name, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("PINFromFile(%s) error: %v", tt.name, err)
			}
			if !pin.Equal([]byte(tt.want)) {
				t.Errorf("PINFromFile(%s) returned another PIN", tt.name)
			}
		})
	}
}

func TestPINFromEnv(t *testing.T) {
	t.Setenv("WARD_TEST_PIN", "s3cret\n")
	pin, err := PINFromEnv("WARD_TEST_PIN")
	if err != nil || !pin.Equal([]byte("s3cret")) {
		t.Errorf("PINFromEnv(set) = %v, %v, want the PIN without newline", pin, err)
	}
	if _, err := PINFromEnv("WARD_TEST_PIN_UNSET"); err == nil || !strings.Contains(err.Error(), "not set") {
		t.Errorf("PINFromEnv(unset) error = %v, want not set", err)
	}
	t.Setenv("WARD_TEST_PIN_EMPTY", "")
	if _, err := PINFromEnv("WARD_TEST_PIN_EMPTY"); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("PINFromEnv(empty) error = %v, want empty", err)
	}
}

func TestOpenErrors(t *testing.T) {
	tok := newTestToken(t, "present")
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"missing library", Config{Module: "/nonexistent/lib.so", TokenLabel: "present", PIN: tok.cfg.PIN}, kek.ErrSealed},
		{"missing token", Config{Module: softHSMModule, TokenLabel: "absent", PIN: tok.cfg.PIN}, ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(tt.cfg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open(%s) error = %v, want %v", tt.name, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.cfg.TokenLabel) {
				t.Errorf("Open(%s) error = %q, want it to name token %q", tt.name, err, tt.cfg.TokenLabel)
			}
			checkNoPIN(t, err)
		})
	}
}
