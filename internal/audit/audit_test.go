package audit_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/internal/audit"
)

func TestWriteCarriesHMACNotSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	log, err := audit.Open(path, []byte("0123456789abcdef0123456789abcdef"), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	const token = "wardjoin.super-secret-value"
	if err := log.Write(audit.Record{Caller: "spiffe://ward.test/a", Action: "join", Decision: "allow",
		HMACs: map[string]string{"join_token": log.HMAC([]byte(token))}}); err != nil {
		t.Fatal(err)
	}
	log.Close()

	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), token) {
		t.Error("audit line contains the secret itself")
	}
	if !strings.Contains(string(data), log.HMAC([]byte(token))) {
		t.Error("audit line lacks the HMAC of the secret")
	}
	info, _ := os.Stat(path)
	if info.Mode().Perm() != 0o600 {
		t.Errorf("audit file mode = %v, want 0600", info.Mode().Perm())
	}
}

func TestWriteFailsOnFullDevice(t *testing.T) {
	log, err := audit.Open("/dev/full", []byte("k"), time.Now)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer log.Close()
	if err := log.Write(audit.Record{Action: "x"}); !errors.Is(err, audit.ErrUnavailable) {
		t.Errorf("Write to /dev/full = %v, want ErrUnavailable", err)
	}
}
