package hsm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/miekg/pkcs11"

	"ward.dev/ward/crypto/secret"
)

// softHSMModule is where Debian's softhsm2 package installs the library.
const softHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

const (
	testPIN   = "pin-7Q9z"
	testSOPIN = "so-pin-4K2m"
)

// testToken is a SoftHSM2 token in its own directory.
type testToken struct {
	cfg      Config
	tokenDir string
}

// newTestToken creates a SoftHSM2 configuration in t.TempDir(), points
// SOFTHSM2_CONF at it and initializes one token labeled label. Tests that
// use it cannot run in parallel, because SoftHSM2 reads SOFTHSM2_CONF once
// per C_Initialize for the whole process.
func newTestToken(t testing.TB, label string) testToken {
	t.Helper()
	if _, err := os.Stat(softHSMModule); err != nil {
		t.Skipf("SoftHSM2 not installed: %v", err)
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		t.Skipf("softhsm2-util not installed: %v", err)
	}

	dir := t.TempDir()
	if strings.ContainsAny(dir, "=#") {
		t.Fatalf("SoftHSM2 cannot parse the configuration path %s; rename the test", dir)
	}
	tokenDir := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokenDir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	content := "directories.tokendir = " + tokenDir + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(conf, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)

	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", testPIN, "--so-pin", testSOPIN).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return testToken{
		cfg:      Config{Module: softHSMModule, TokenLabel: label, PIN: secret.New([]byte(testPIN))},
		tokenDir: tokenDir,
	}
}

// openTestHSM opens the token and closes it when the test ends.
func openTestHSM(t testing.TB, cfg Config, opts ...option) *HSM {
	t.Helper()
	h, err := open(cfg, opts...)
	if err != nil {
		t.Fatalf("Open(%s) error: %v", cfg.TokenLabel, err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// faultModule wraps the PKCS#11 calls of one HSM. While down is set every
// call fails with CKR_DEVICE_REMOVED, as a token pulled out of its reader
// does. It also counts logins and open sessions.
type faultModule struct {
	module
	down            atomic.Bool
	failOpenSession atomic.Bool // fail only C_OpenSession, with CKR_DEVICE_ERROR
	logins          atomic.Int32
	openSessions    atomic.Int32
	maxOpenSession  atomic.Int32
}

var errRemoved = pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED)

func (f *faultModule) GetSlotList(present bool) ([]uint, error) {
	if f.down.Load() {
		return nil, errRemoved
	}
	return f.module.GetSlotList(present)
}

func (f *faultModule) OpenSession(slot uint, flags uint) (pkcs11.SessionHandle, error) {
	if f.down.Load() {
		return 0, errRemoved
	}
	if f.failOpenSession.Load() {
		return 0, pkcs11.Error(pkcs11.CKR_DEVICE_ERROR)
	}
	sh, err := f.module.OpenSession(slot, flags)
	if err == nil {
		n := f.openSessions.Add(1)
		for {
			prev := f.maxOpenSession.Load()
			if n <= prev || f.maxOpenSession.CompareAndSwap(prev, n) {
				break
			}
		}
	}
	return sh, err
}

func (f *faultModule) CloseSession(sh pkcs11.SessionHandle) error {
	f.openSessions.Add(-1)
	return f.module.CloseSession(sh)
}

func (f *faultModule) Login(sh pkcs11.SessionHandle, userType uint, pin string) error {
	f.logins.Add(1)
	if f.down.Load() {
		return errRemoved
	}
	return f.module.Login(sh, userType, pin)
}

func (f *faultModule) FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error {
	if f.down.Load() {
		return errRemoved
	}
	return f.module.FindObjectsInit(sh, temp)
}

func (f *faultModule) SignInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	if f.down.Load() {
		return errRemoved
	}
	return f.module.SignInit(sh, m, o)
}

func (f *faultModule) Sign(sh pkcs11.SessionHandle, message []byte) ([]byte, error) {
	if f.down.Load() {
		return nil, errRemoved
	}
	return f.module.Sign(sh, message)
}

func (f *faultModule) DecryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	if f.down.Load() {
		return errRemoved
	}
	return f.module.DecryptInit(sh, m, o)
}

func (f *faultModule) EncryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	if f.down.Load() {
		return errRemoved
	}
	return f.module.EncryptInit(sh, m, o)
}

// openFaultyHSM opens the token with a faultModule between the HSM and the
// library.
func openFaultyHSM(t testing.TB, cfg Config) (*HSM, *faultModule) {
	t.Helper()
	var fm *faultModule
	h := openTestHSM(t, cfg, withModule(func(m module) module {
		fm = &faultModule{module: m}
		return fm
	}))
	return h, fm
}
