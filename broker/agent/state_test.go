package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ward.dev/ward/test/wardtest"
)

// TestInitOnlySavedIdentity runs an init-only agent twice on one
// join token, as a restarted init container would: the second run renews
// with the certificate the first saved in state_dir. Without state_dir, or
// with the saved key damaged, the spent token is all there is and the run
// fails naming it.
func TestInitOnlySavedIdentity(t *testing.T) {
	t.Parallel()
	srv := wardtest.StartDev(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	dir := t.TempDir()
	state, out := filepath.Join(dir, "state"), filepath.Join(dir, "out")
	token := joinToken(t, srv, dir, webID)
	config := func(stateLine string) string {
		return fmt.Sprintf(`
broker: {addr: %s, ca_file: %s}
auth: {method: join_token, join_token_file: %s}
output_dir: %s
%s
credentials:
  - {name: svid, path: x509, ttl: 1m}
`, srv.Addr(), srv.CACertPath(), token, out, stateLine)
	}
	run := func(yaml string) error {
		a, err := newInitAgent(t, dir, yaml)
		if err != nil {
			t.Fatalf("agent config: %v", err)
		}
		return a.InitOnly(ctx)
	}

	withState := config("state_dir: " + state)
	if err := run(withState); err != nil {
		t.Fatalf("first InitOnly = %v", err)
	}
	for _, name := range []string{"agent.key.pem", "agent.cert.pem", "agent.bundle.pem"} {
		checkMode(t, filepath.Join(state, name), 0o600)
	}
	checkMode(t, state, 0o700)
	first := readCert(t, filepath.Join(out, "svid.cert.pem"))

	if err := run(withState); err != nil {
		t.Fatalf("second InitOnly with the saved certificate = %v", err)
	}
	if second := readCert(t, filepath.Join(out, "svid.cert.pem")); second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("second run wrote the first run's certificate, want a new one")
	}

	if err := run(config("")); err == nil || !strings.Contains(err.Error(), "join token") {
		t.Errorf("InitOnly without state_dir on a spent token = %v, want an error naming the join token", err)
	}

	// A link or a FIFO in place of a saved file is not read: the run falls
	// back to the spent token instead of following or waiting on it.
	keyPath, certPath := filepath.Join(state, "agent.key.pem"), filepath.Join(state, "agent.cert.pem")
	elsewhere := filepath.Join(dir, "elsewhere.pem")
	if err := os.Rename(keyPath, elsewhere); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, keyPath); err != nil {
		t.Fatal(err)
	}
	if err := run(withState); err == nil || !strings.Contains(err.Error(), "join token") {
		t.Errorf("InitOnly with a linked saved key = %v, want an error naming the join token", err)
	}
	if err := os.Remove(keyPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(elsewhere, keyPath); err != nil {
		t.Fatal(err)
	}
	saved, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(certPath); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(certPath, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(withState); err == nil || !strings.Contains(err.Error(), "join token") {
		t.Errorf("InitOnly with a FIFO for the saved certificate = %v, want an error naming the join token", err)
	}
	if err := os.Remove(certPath); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "agent.key.pem"), []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(withState); err == nil || !strings.Contains(err.Error(), "join token") {
		t.Errorf("InitOnly with a damaged saved key = %v, want an error naming the join token", err)
	}
}

// TestStateDirChecked rejects a state_dir that others may write and one
// that names output_dir in other words, before the agent contacts anyone.
func TestStateDirChecked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("unused\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	caFile, err := writeTestCA(t, dir)
	if err != nil {
		t.Fatal(err)
	}

	// One directory others may write, one output directory, and a real
	// state directory reached through a symbolic link.
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o770); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "out"), 0o750); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(dir, "real")
	if err := os.MkdirAll(filepath.Join(real, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ name, stateDir, want string }{
		{"group-writable", open, "mode 770"},
		{"link on the path", filepath.Join(dir, "link", "state"), "is a symbolic link"},
		{"same as output_dir", "./out/", "must differ from output_dir"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := newInitAgent(t, dir, fmt.Sprintf(`
broker: {addr: https://127.0.0.1:1, ca_file: %s}
auth: {method: join_token, join_token_file: %s}
output_dir: out
state_dir: %s
credentials:
  - {name: svid, path: x509, ttl: 1m}
`, caFile, token, c.stateDir))
			if err != nil {
				if strings.Contains(err.Error(), c.want) {
					return
				}
				t.Fatalf("agent config: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := a.InitOnly(ctx); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("InitOnly = %v, want an error containing %q", err, c.want)
			}
		})
	}
}
