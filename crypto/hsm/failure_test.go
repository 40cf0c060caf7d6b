package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"os"
	"sync"
	"testing"

	"ward.dev/ward/crypto/kek"
)

func TestSignerTokenRemovedAndBack(t *testing.T) {
	tok := newTestToken(t, "removed")
	h := openTestHSM(t, tok.cfg)
	initKeys(t, h)
	s, err := h.Signer(KeyRef{Label: DefaultCALabel})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))

	// Moving the token directory away makes SoftHSM2 fail like a token
	// pulled out of its reader.
	away := tok.tokenDir + ".away"
	if err := os.Rename(tok.tokenDir, away); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		sig, err := s.Sign(nil, digest[:], crypto.SHA256)
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, kek.ErrSealed) {
			t.Fatalf("Sign %d with the token gone = %x, %v, want ErrUnavailable and kek.ErrSealed", i, sig, err)
		}
		if sig != nil {
			t.Errorf("Sign %d with the token gone returned a signature", i)
		}
	}

	if err := os.Rename(away, tok.tokenDir); err != nil {
		t.Fatal(err)
	}
	sig, err := s.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign after the token came back error: %v", err)
	}
	if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Errorf("signature after recovery does not verify")
	}
}

func TestSignerInjectedFailure(t *testing.T) {
	tok := newTestToken(t, "inject")
	h, fm := openFaultyHSM(t, tok.cfg)
	initKeys(t, h)
	s, err := h.Signer(KeyRef{Label: DefaultCALabel})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))
	if _, err := s.Sign(nil, digest[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}

	// Several goroutines sign while the device is gone: all must fail.
	fm.down.Store(true)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				sig, err := s.Sign(nil, digest[:], crypto.SHA256)
				if err == nil || sig != nil {
					t.Errorf("Sign with the device removed = %x, %v, want no signature and an error", sig, err)
					return
				}
				if !errors.Is(err, ErrUnavailable) {
					t.Errorf("Sign with the device removed error = %v, want ErrUnavailable", err)
					return
				}
			}
		})
	}
	wg.Wait()

	fm.down.Store(false)
	sig, err := s.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign after the device came back error: %v", err)
	}
	if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Errorf("signature after recovery does not verify")
	}
	gen, _ := h.lib.state()
	if gen == 0 {
		t.Errorf("library generation after a device failure = 0, want a reset")
	}
}

func TestTwoHSMsShareLibrary(t *testing.T) {
	tok := newTestToken(t, "shared")
	first := openTestHSM(t, tok.cfg)
	initKeys(t, first)
	second, fm := openFaultyHSM(t, tok.cfg)
	if first.lib != second.lib {
		t.Fatalf("two HSMs on one library loaded it twice")
	}

	s1, err := first.Signer(KeyRef{Label: DefaultCALabel})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := second.Signer(KeyRef{Label: DefaultCALabel})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))

	// A failure seen by the second HSM resets the library under the first.
	fm.down.Store(true)
	if _, err := s2.Sign(nil, digest[:], crypto.SHA256); err == nil {
		t.Fatal("Sign through the failed HSM error = nil, want an error")
	}
	fm.down.Store(false)

	for name, s := range map[string]*Signer{"first": s1, "second": s2} {
		if _, err := s.Sign(nil, digest[:], crypto.SHA256); err != nil {
			t.Errorf("Sign through the %s HSM after the reset error: %v", name, err)
		}
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Sign(nil, digest[:], crypto.SHA256); err != nil {
		t.Errorf("Sign through the first HSM after closing the second error: %v", err)
	}
	if _, err := s2.Sign(nil, digest[:], crypto.SHA256); !errors.Is(err, ErrClosed) {
		t.Errorf("Sign through a closed HSM error = %v, want ErrClosed", err)
	}
}

// TestOpenSessionFailureResets checks that a library failing in
// C_OpenSession, while its slot list still shows the token, is initialized
// again instead of failing forever.
func TestOpenSessionFailureResets(t *testing.T) {
	saved := minResetInterval
	minResetInterval = 0
	t.Cleanup(func() { minResetInterval = saved })

	tok := newTestToken(t, "opensession")
	h, fm := openFaultyHSM(t, tok.cfg)
	initKeys(t, h)
	s, err := h.Signer(KeyRef{Label: DefaultCALabel})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))

	fm.failOpenSession.Store(true)
	h.lost(h.gen) // drop the idle sessions, so the next Sign opens one
	genBefore, _ := h.lib.state()
	if _, err := s.Sign(nil, digest[:], crypto.SHA256); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Sign while C_OpenSession fails error = %v, want ErrUnavailable", err)
	}
	if gen, _ := h.lib.state(); gen <= genBefore {
		t.Errorf("library generation after C_OpenSession failed = %d, want a reset past %d", gen, genBefore)
	}

	fm.failOpenSession.Store(false)
	if _, err := s.Sign(nil, digest[:], crypto.SHA256); err != nil {
		t.Fatalf("Sign after C_OpenSession works again error: %v", err)
	}
}
