package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/test/hsmtest"
	"ward.dev/ward/test/wardtest"
)

// TestHSMBackedServe runs the documented HSM setup with the real tools:
// ward hsm init on a fresh SoftHSM2 token, ward serve with the KEK and the
// CA key on it, a certificate that openssl verifies, and pkcs11-tool
// listing the objects ward created.
func TestHSMBackedServe(t *testing.T) {
	tok := hsmtest.NewToken(t, "ward")
	bin := wardtest.Build(t)
	hsmFlags := []string{"--module", tok.Module, "--token-label", tok.Label, "--pin-file", tok.PINFile}

	out, err := exec.Command(bin, append([]string{"hsm", "init"}, hsmFlags...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ward hsm init: %v\n%s", err, out)
	}
	list, err := exec.Command("pkcs11-tool", "--module", tok.Module, "--token-label", tok.Label,
		"--login", "--pin", tok.PIN, "--list-objects").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool --list-objects: %v\n%s", err, list)
	}
	for _, label := range []string{"ward-ca", "ward-kek"} {
		if !strings.Contains(string(list), label) {
			t.Errorf("pkcs11-tool --list-objects does not show %s:\n%s", label, list)
		}
	}

	cfg := "data_dir: data\nkek: {type: pkcs11}\nca: {backend: pkcs11}\nhsm: {module: " + tok.Module +
		", token_label: " + tok.Label + ", pin_file: " + tok.PINFile + "}\n"
	s := wardtest.Start(t, wardtest.WithConfig(cfg))
	dir := t.TempDir()
	mustWard(t, s, s.Env(), "issue", "x509", "--spiffe-id", "spiffe://ward.test/ns/shop/sa/web", "--ttl", "10m", "--out", dir)
	verify, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(dir, "bundle.pem"), filepath.Join(dir, "cert.pem")).CombinedOutput()
	if err != nil || !strings.Contains(string(verify), ": OK") {
		t.Errorf("openssl verify of an HSM-signed certificate: %v\n%s", err, verify)
	}
	if _, err := os.Stat(filepath.Join(s.DataDir(), "ca-key.sealed")); err == nil {
		t.Error("ca-key.sealed exists although the CA key lives in the HSM")
	}
}

// TestHSMWrongPINFailsOnce starts ward with a wrong PIN: one clear error
// naming the token, exit 1, and no retry loop that could lock the token.
func TestHSMWrongPINFailsOnce(t *testing.T) {
	tok := hsmtest.NewToken(t, "ward")
	bin := wardtest.Build(t)
	if out, err := exec.Command(bin, "hsm", "init", "--module", tok.Module, "--token-label", tok.Label, "--pin-file", tok.PINFile).CombinedOutput(); err != nil {
		t.Fatalf("ward hsm init: %v\n%s", err, out)
	}
	dir := t.TempDir()
	wrongPIN := filepath.Join(dir, "wrong-pin")
	if err := os.WriteFile(wrongPIN, []byte("999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ward.yaml")
	content := "trust_domain: ward.test\ndata_dir: data\nlisten: {api: 127.0.0.1:0}\nkek: {type: pkcs11}\nca: {backend: pkcs11}\nhsm: {module: " + tok.Module +
		", token_label: " + tok.Label + ", pin_file: " + wrongPIN + "}\n"
	if err := os.WriteFile(cfg, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "serve", "--config", cfg)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("ward serve with a wrong PIN kept running; stderr: %s", stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	msg := stderr.String()
	if !strings.Contains(msg, tok.Label) || !strings.Contains(strings.ToLower(msg), "pin") {
		t.Errorf("stderr %q does not name the token and the PIN problem", msg)
	}
	if strings.Contains(msg, "999999") {
		t.Error("stderr contains the PIN")
	}
}
