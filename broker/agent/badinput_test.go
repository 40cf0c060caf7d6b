package agent_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/broker/agent"
	"ward.dev/ward/test/wardtest"
)

// newInitAgent writes a configuration and returns the agent, or the error
// of LoadConfig or New.
func newInitAgent(t *testing.T, dir, yaml string) (*agent.Agent, error) {
	t.Helper()
	path := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return agent.New(cfg, agent.Options{})
}

// TestInitOnlyBadInput checks that a template that fails, a template that
// does not parse and an output directory that cannot be written each stop
// the agent with an error naming the item, and leave earlier files intact.
func TestInitOnlyBadInput(t *testing.T) {
	t.Parallel()
	srv := wardtest.StartDev(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	config := func(dir, out, extra string) string {
		return fmt.Sprintf(`
broker: {addr: %s, ca_file: %s}
auth: {method: join_token, join_token_file: %s}
output_dir: %s
credentials:
  - {name: svid, path: x509, ttl: 1m}
%s`, srv.Addr(), srv.CACertPath(), joinToken(t, srv, dir, webID), out, extra)
	}

	t.Run("template fails", func(t *testing.T) {
		dir := t.TempDir()
		previous := []byte("previous content\n")
		if err := os.WriteFile(filepath.Join(dir, "app.conf"), previous, 0o600); err != nil {
			t.Fatal(err)
		}
		a, err := newInitAgent(t, dir, config(dir, dir, `templates:
  - name: app
    destination: app.conf
    inline: "cert={{ (cred \"svid\").cert }} db={{ (cred \"nosuch\").password }}"
`))
		if err != nil {
			t.Fatalf("New = %v", err)
		}
		err = a.InitOnly(ctx)
		if err == nil || !strings.Contains(err.Error(), `template "app"`) || !strings.Contains(err.Error(), `no credential named "nosuch"`) {
			t.Fatalf("InitOnly = %v, want an error naming template app and credential nosuch", err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "app.conf")); string(got) != string(previous) {
			t.Errorf("app.conf = %q after a failed render, want the previous %q", got, previous)
		}
	})

	t.Run("template does not parse", func(t *testing.T) {
		dir := t.TempDir()
		_, err := newInitAgent(t, dir, config(dir, dir, "templates:\n  - {name: broken, inline: \"{{ .Creds\"}\n"))
		if err == nil || !strings.Contains(err.Error(), `template "broken"`) || !strings.Contains(err.Error(), "agent.yaml:8") {
			t.Errorf("New = %v, want an error naming template broken at agent.yaml:8", err)
		}
	})

	t.Run("output dir unwritable", func(t *testing.T) {
		dir := t.TempDir()
		// A regular file where a directory should be: unwritable even for
		// root, which ignores permission bits.
		notDir := filepath.Join(dir, "file")
		if err := os.WriteFile(notDir, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(notDir, "secrets")
		a, err := newInitAgent(t, dir, config(dir, out, ""))
		if err != nil {
			t.Fatalf("New = %v", err)
		}
		// The check runs before the agent authenticates, so the join token
		// is not spent on a run that cannot write its files.
		err = a.InitOnly(ctx)
		if err == nil || !strings.Contains(err.Error(), "output_dir") || !strings.Contains(err.Error(), out) {
			t.Errorf("InitOnly = %v, want an error naming output_dir %s", err, out)
		}
	})

	t.Run("target is a directory", func(t *testing.T) {
		dir := t.TempDir()
		oldKey := []byte("old key\n")
		if err := os.WriteFile(filepath.Join(dir, "svid.key.pem"), oldKey, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(dir, "svid.cert.pem"), 0o700); err != nil {
			t.Fatal(err)
		}
		a, err := newInitAgent(t, dir, config(dir, dir, ""))
		if err != nil {
			t.Fatalf("New = %v", err)
		}
		err = a.InitOnly(ctx)
		if err == nil || !strings.Contains(err.Error(), `credential "svid"`) || !strings.Contains(err.Error(), "svid.cert.pem") {
			t.Errorf("InitOnly = %v, want an error naming credential svid and svid.cert.pem", err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "svid.key.pem")); string(got) != string(oldKey) {
			t.Errorf("svid.key.pem replaced although its certificate could not be written")
		}
	})
}

// TestAgentCommand runs the ward binary: --init-only writes the files and
// exits 0, a bad configuration exits 1 with one line naming the problem,
// and --exec passes the credential paths to the child.
func TestAgentCommand(t *testing.T) {
	t.Parallel()
	srv := wardtest.StartDev(t)
	bin := wardtest.Build(t)
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	run := func(args ...string) (string, string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("run ward %v: %v", args, err)
		}
		return stdout.String(), stderr.String(), code
	}

	good := write("good.yaml", fmt.Sprintf(`broker: {addr: %s, ca_file: %s}
auth: {method: join_token, join_token_file: %s}
output_dir: out
credentials:
  - {name: svid, path: x509, ttl: 1m}
`, srv.Addr(), srv.CACertPath(), joinToken(t, srv, dir, webID)))
	if err := os.Mkdir(filepath.Join(dir, "out"), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := run("agent", "--config", good, "--init-only"); code != 0 {
		t.Fatalf("ward agent --init-only = exit %d, stderr %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "svid.cert.pem")); err != nil {
		t.Errorf("--init-only wrote no certificate: %v", err)
	}

	bad := write("bad.yaml", "broker: {addr: \"https://127.0.0.1:1\", ca_file: c}\nauth: {method: join_token, join_token_file: j}\noutput_dir: o\ncredentials:\n  - {name: pw, path: ldap/x}\n")
	_, stderr, code := run("agent", "--config", bad, "--init-only")
	if code != 1 || !strings.Contains(stderr, "bad.yaml:5") || !strings.Contains(stderr, `unknown credential kind "ldap"`) {
		t.Errorf("ward agent with unknown kind = exit %d, stderr %q, want 1 and the file:line and kind", code, stderr)
	}
	if lines := strings.Count(strings.TrimSpace(stderr), "\n"); lines != 0 {
		t.Errorf("stderr has %d lines, want one", lines+1)
	}

	if _, _, code := run("agent"); code != 2 {
		t.Errorf("ward agent without --config = exit %d, want 2", code)
	}

	// --exec: the child prints its environment's credential path and
	// exits 3, which the agent passes on. A second join token is needed.
	execCfg := write("exec.yaml", fmt.Sprintf(`broker: {addr: %s, ca_file: %s}
auth: {method: join_token, join_token_file: %s}
output_dir: out
credentials:
  - {name: svid, path: x509, ttl: 1m}
`, srv.Addr(), srv.CACertPath(), joinToken(t, srv, t.TempDir(), webID)))
	stdout, stderr, code := run("agent", "--config", execCfg, "--", "/bin/sh", "-c", `cat "$WARD_SVID_CERT_FILE" >/dev/null && echo "cert=$WARD_SVID_CERT_FILE"; exit 3`)
	if code != 3 {
		t.Errorf("ward agent -- sh = exit %d, want the child's 3; stderr %s", code, stderr)
	}
	if want := "cert=" + filepath.Join(dir, "out", "svid.cert.pem"); !strings.Contains(stdout, want) {
		t.Errorf("child output = %q, want %q", stdout, want)
	}
}

// TestExecRestartsAndSignals runs a shell child in --exec mode with
// 4-second certificates: with on_exec restart a new child starts after
// each renewal; with signal the same child receives SIGHUP.
func TestExecRestartsAndSignals(t *testing.T) {
	t.Parallel()
	srv := wardtest.StartDev(t)
	for _, mode := range []string{"restart", "signal"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			log := filepath.Join(dir, "child.log")
			path := filepath.Join(dir, "agent.yaml")
			yaml := fmt.Sprintf(`broker: {addr: %s, ca_file: %s}
auth: {method: join_token, join_token_file: %s}
output_dir: %s
credentials:
  - {name: svid, path: x509, ttl: 4s}
notify: {on_exec: %s, signal: HUP}
`, srv.Addr(), srv.CACertPath(), joinToken(t, srv, dir, webID), dir, mode)
			if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := agent.LoadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			script := fmt.Sprintf(`echo "start $$" >> %[1]q; trap 'echo "hup $$" >> %[1]q' HUP; while :; do sleep 0.1; done`, log)
			a, err := agent.New(cfg, agent.Options{Exec: []string{"/bin/sh", "-c", script}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()

			want := "start"
			if mode == "signal" {
				want = "hup"
			}
			waitFor(t, 20*time.Second, "two "+want+" lines", func() bool {
				b, _ := os.ReadFile(log)
				return strings.Count(string(b), want) >= 2
			})
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v, want nil after cancel", err)
			}
			b, _ := os.ReadFile(log)
			if mode == "signal" && strings.Count(string(b), "start") != 1 {
				t.Errorf("child log = %q, want one start in signal mode", b)
			}
		})
	}
}
