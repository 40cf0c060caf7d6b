package wardtest_test

import (
	"bytes"
	"net/http"
	"os"
	"strings"
	"testing"

	"ward.dev/ward/test/wardtest"
)

func TestMain(m *testing.M) { os.Exit(wardtest.Main(m)) }

func TestStartDevRestartAndKill(t *testing.T) {
	s := wardtest.StartDev(t)

	stdout, stderr, code := s.Run(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "ward ") {
		t.Fatalf("ward version = %q, %q, exit %d, want \"ward ...\" and exit 0", stdout, stderr, code)
	}

	status, body := s.Do(t, http.MethodGet, "/v1/bundle", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /v1/bundle = %d %s, want 200", status, body)
	}
	caPEM, err := os.ReadFile(s.CACertPath())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, caPEM) {
		t.Errorf("GET /v1/bundle differs from %s", s.CACertPath())
	}

	status, body = s.DoWith(t, s.HTTPClient(), "", http.MethodGet, "/v1/leases", nil)
	if status != http.StatusUnauthorized {
		t.Errorf("GET /v1/leases without a token = %d %s, want 401", status, body)
	}

	oldAddr := s.Addr()
	s.Kill9()
	s.Restart()
	if s.Addr() == "" || s.Pid() == 0 {
		t.Fatalf("after Restart: Addr() = %q, Pid() = %d, want a running server", s.Addr(), s.Pid())
	}
	if status, body := s.Do(t, http.MethodGet, "/v1/health", nil); status != http.StatusOK {
		t.Errorf("GET /v1/health after restart (was %s) = %d %s, want 200", oldAddr, status, body)
	}

	log, err := os.ReadFile(s.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(log, []byte("ward serving")); n != 2 {
		t.Errorf("%s has %d \"ward serving\" lines, want 2 (one per start)", s.LogPath(), n)
	}
}

func TestRunExitCodes(t *testing.T) {
	s := wardtest.StartDev(t)

	cases := []struct {
		name string
		args []string
		want int
	}{
		{"ok", []string{"version"}, 0},
		{"refused", []string{"lease", "renew", "x509/spiffe://ward.test/ns/shop/sa/web/none"}, 1},
		{"unknown flag", []string{"version", "--no-such-flag"}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := s.Run(t, tc.args...)
			if code != tc.want {
				t.Errorf("ward %s: exit %d (stderr %q), want %d", strings.Join(tc.args, " "), code, stderr, tc.want)
			}
		})
	}
}

func TestStartWithConfig(t *testing.T) {
	s := wardtest.Start(t, wardtest.WithConfig("environment: staging\nlog:\n  format: json\n"))

	stdout, stderr, code := s.Run(t, "policy", "check", "spiffe://ward.test/ward/admin", "staging", "policy", "reload")
	if code != 0 || !strings.HasPrefix(stdout, "allow") {
		t.Errorf("ward policy check in staging = %q, %q, exit %d, want allow", stdout, stderr, code)
	}
	log, err := os.ReadFile(s.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte(`"msg":"ward serving"`)) || !bytes.Contains(log, []byte(`"environment":"staging"`)) {
		t.Errorf("log %s is not JSON with environment staging:\n%s", s.LogPath(), log)
	}
}

func TestStopAndKill9ExitStatus(t *testing.T) {
	s := wardtest.StartDev(t)

	s.Stop()
	if st := s.LastExit(); st == nil || st.ExitCode() != 0 {
		t.Errorf("ward serve after SIGTERM: LastExit() = %v, want exit status 0", st)
	}
	log, err := os.ReadFile(s.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte("ward stopped")) {
		t.Errorf("log %s has no \"ward stopped\" line after SIGTERM", s.LogPath())
	}

	s.Restart()
	s.Kill9()
	if st := s.LastExit(); st == nil || st.String() != "signal: killed" {
		t.Errorf("ward serve after Kill9: LastExit() = %v, want signal: killed", st)
	}
}
