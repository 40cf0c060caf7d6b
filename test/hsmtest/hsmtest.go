// Package hsmtest creates throwaway SoftHSM2 tokens for tests that need a
// real PKCS#11 device.
//
// SoftHSM2 reads SOFTHSM2_CONF once per C_Initialize for the whole process,
// so tests that use a token set the variable with t.Setenv and cannot run in
// parallel.
package hsmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Module is the SoftHSM2 PKCS#11 library installed by Debian's softhsm2.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// Token is an initialized SoftHSM2 token.
type Token struct {
	Module   string
	Label    string
	PIN      string
	PINFile  string // mode 0600, holding PIN
	TokenDir string // move it away to simulate a removed token
	Conf     string // the SOFTHSM2_CONF file
}

// NewToken initializes a token labeled label in tb.TempDir() and points
// SOFTHSM2_CONF at it. Without SoftHSM2 it fails under CI and skips
// elsewhere, naming the package to install.
func NewToken(tb testing.TB, label string) Token {
	tb.Helper()
	if _, err := os.Stat(Module); err != nil {
		missing(tb, err)
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		missing(tb, err)
	}

	dir := tb.TempDir()
	if strings.ContainsAny(dir, "=#") {
		tb.Fatalf("SoftHSM2 cannot parse the configuration path %s; rename the test", dir)
	}
	tokenDir := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokenDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	content := "directories.tokendir = " + tokenDir + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(conf, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	if t, ok := tb.(interface{ Setenv(string, string) }); ok {
		t.Setenv("SOFTHSM2_CONF", conf)
	} else {
		tb.Fatal("hsmtest.NewToken needs a *testing.T or *testing.B")
	}

	const pin, soPIN = "2468", "13579"
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", soPIN).CombinedOutput()
	if err != nil {
		tb.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return Token{Module: Module, Label: label, PIN: pin, PINFile: pinFile, TokenDir: tokenDir, Conf: conf}
}

func missing(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf("SoftHSM2 missing (%v): make test-deps installs softhsm2", err)
	}
	tb.Skipf("SoftHSM2 missing (%v): run make test-deps", err)
}
