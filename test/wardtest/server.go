package wardtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts for starting, stopping and running commands. They are generous
// because the machine running the tests may be loaded.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
	runTimeout   = 60 * time.Second
)

// Option configures a server started by Start or StartDev.
type Option func(*options)

type options struct {
	dir         string
	config      string
	args        []string
	env         []string
	allowSealed bool
}

// WithDir puts the data directory and the output files under dir instead of
// tb.TempDir(), so they outlive the test (for checks over a whole run).
func WithDir(dir string) Option { return func(o *options) { o.dir = dir } }

// WithConfig starts `ward serve --config FILE` with this YAML instead of
// --dev. Relative paths in the YAML are relative to the file, which sits in
// the server's directory. The --data-dir and --listen flags still apply.
// YAML without trust_domain gets trust_domain: ward.test, the domain of
// the development servers the other tests start.
func WithConfig(yaml string) Option { return func(o *options) { o.config = yaml } }

// WithArgs appends arguments to the serve command line.
func WithArgs(args ...string) Option {
	return func(o *options) { o.args = append(o.args, args...) }
}

// WithEnv adds KEY=value entries to the server's environment, which
// otherwise is the test's environment without WARD_* variables.
func WithEnv(kv ...string) Option {
	return func(o *options) { o.env = append(o.env, kv...) }
}

// Server is one `ward serve` subprocess. Its methods are safe for concurrent
// use, except that Start, Restart, Stop and Kill9 must not race with each
// other.
type Server struct {
	tb      testing.TB
	bin     string
	dir     string
	dataDir string
	opts    options

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	watch  *envWatcher   // stdout of the current process
	addr   string        // https://127.0.0.1:PORT of the current process
	cacert string

	lastExit *os.ProcessState // of the most recent process that exited
	stderr   *os.File
	stdout   *os.File
}

// StartDev starts `ward serve --dev` with a fresh data directory on a free
// port of 127.0.0.1 and stops it when the test ends.
func StartDev(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	return Start(tb, opts...)
}

// Start starts `ward serve`, with --dev unless WithConfig is given. It
// returns once GET /v1/health returns 200, and stops the server when the
// test ends.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()

	s := &Server{tb: tb, bin: Build(tb)}
	for _, opt := range opts {
		opt(&s.opts)
	}
	s.dir = s.opts.dir
	if s.dir == "" {
		s.dir = tb.TempDir()
	}
	s.dataDir = filepath.Join(s.dir, "data")

	var err error
	if s.stdout, err = os.OpenFile(s.StdoutPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
		tb.Fatalf("wardtest: %v", err)
	}
	if s.stderr, err = os.OpenFile(s.LogPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
		tb.Fatalf("wardtest: %v", err)
	}
	tb.Cleanup(func() {
		s.Stop()
		s.stdout.Close()
		s.stderr.Close()
	})

	if s.opts.config != "" {
		config := s.opts.config
		if !strings.Contains(config, "trust_domain:") {
			config = "trust_domain: ward.test\n" + config
		}
		if err := os.WriteFile(s.ConfigPath(), []byte(config), 0o600); err != nil {
			tb.Fatalf("wardtest: write config: %v", err)
		}
	}
	s.start(tb)
	return s
}

// Dir returns the directory holding the data directory and output files.
func (s *Server) Dir() string { return s.dir }

// DataDir returns the server's data directory.
func (s *Server) DataDir() string { return s.dataDir }

// LogPath returns the file that receives the server's stderr (its log),
// appended across restarts.
func (s *Server) LogPath() string { return filepath.Join(s.dir, "stderr.log") }

// StdoutPath returns the file that receives the server's stdout, appended
// across restarts.
func (s *Server) StdoutPath() string { return filepath.Join(s.dir, "stdout.log") }

// ConfigPath returns where the WithConfig YAML is written.
func (s *Server) ConfigPath() string { return filepath.Join(s.dir, "ward.yaml") }

// AuditPath returns the audit log in the data directory. A configuration
// that moves the audit log elsewhere is not reflected here.
func (s *Server) AuditPath() string { return filepath.Join(s.dataDir, "audit.log") }

// CACertPath returns the trust bundle file the server printed as WARD_CACERT.
func (s *Server) CACertPath() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cacert
}

// Addr returns the API address, https://127.0.0.1:PORT. The port changes
// with each Restart.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// AdminToken returns the admin bearer token from the data directory.
func (s *Server) AdminToken() string {
	s.tb.Helper()
	b, err := os.ReadFile(filepath.Join(s.dataDir, "admin.token"))
	if err != nil {
		s.tb.Fatalf("wardtest: read admin token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// LastExit returns how the most recent server process ended (after Stop,
// Kill9 or a crash), or nil if none has ended.
func (s *Server) LastExit() *os.ProcessState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastExit
}

// Pid returns the process id of the running server, or 0.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *Server) start(tb testing.TB) {
	tb.Helper()

	// A sealed server prints no address, so it gets a port picked here.
	// Another process may take that port first. Then ward exits and the
	// start is retried on a new port.
	for attempt := 1; ; attempt++ {
		listen := "127.0.0.1:0"
		if s.opts.allowSealed {
			listen = pickPort(tb)
		}
		retry := s.startOnce(tb, listen)
		if !retry {
			return
		}
		if attempt == 3 {
			tb.Fatalf("wardtest: ward serve found no free port in 3 attempts; log:\n%s", tail(s.LogPath()))
		}
	}
}

// startOnce starts one process listening on listen and waits until it is
// ready (or sealed, when allowed). It returns true when the process exited
// because the port was taken.
func (s *Server) startOnce(tb testing.TB, listen string) (retry bool) {
	tb.Helper()

	args := []string{"serve", "--data-dir", s.dataDir, "--listen", listen}
	if s.opts.config != "" {
		args = append(args, "--config", s.ConfigPath())
	} else {
		args = append(args, "--dev")
	}
	args = append(args, s.opts.args...)

	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Env = append(cleanEnv(), s.opts.env...)
	cmd.Stderr = s.stderr
	cmd.SysProcAttr = sysProcAttr()
	watch := newEnvWatcher(s.stdout)
	cmd.Stdout = watch

	logStart := logSize(s.LogPath())
	if err := cmd.Start(); err != nil {
		tb.Fatalf("wardtest: start %s: %v", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		s.mu.Lock()
		s.lastExit = cmd.ProcessState
		s.mu.Unlock()
		close(exited)
	}()

	s.mu.Lock()
	s.cmd, s.exited, s.watch = cmd, exited, watch
	s.addr, s.cacert = "", filepath.Join(s.dataDir, "ca.pem")
	if s.opts.allowSealed {
		s.addr = "https://" + listen
	}
	s.mu.Unlock()

	var sealed <-chan struct{}
	if s.opts.allowSealed {
		sealed = s.pollSealed(exited)
	}
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-watch.ready:
	case <-sealed:
		return false
	case <-exited:
		if strings.Contains(tailFrom(s.LogPath(), logStart), "address already in use") {
			s.clearProcess()
			return true
		}
		tb.Fatalf("wardtest: ward serve exited before printing its address (%s); log:\n%s", cmd.ProcessState, tail(s.LogPath()))
	case <-timer.C:
		s.Kill9()
		tb.Fatalf("wardtest: ward serve printed no address within %s; log:\n%s", startTimeout, tail(s.LogPath()))
	}

	if err := s.becomeReady(exited, watch); err != nil {
		s.Kill9()
		tb.Fatalf("wardtest: %v; log:\n%s", err, tail(s.LogPath()))
	}
	return false
}

// becomeReady records the printed address and waits for /v1/health.
func (s *Server) becomeReady(exited <-chan struct{}, watch *envWatcher) error {
	s.mu.Lock()
	s.addr, s.cacert = watch.addr, watch.cacert
	s.mu.Unlock()
	return s.waitHealthy(exited)
}

func (s *Server) clearProcess() {
	s.mu.Lock()
	s.cmd, s.watch = nil, nil
	s.mu.Unlock()
}

// waitHealthy polls GET /v1/health until it returns 200.
func (s *Server) waitHealthy(exited <-chan struct{}) error {
	client := s.HTTPClient()
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("ward serve exited while waiting for /v1/health")
		default:
		}
		resp, err := client.Get(s.Addr() + "/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("GET /v1/health not OK within %s: %v", startTimeout, last)
}

// Restart stops the server (SIGTERM) if it runs and starts it again with the
// same data directory. The new process listens on a new port.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	s.start(s.tb)
}

// Stop sends SIGTERM and waits for the process to exit, then SIGKILL after
// a timeout. It does nothing when the server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
	}
	s.clearProcess()
}

// Kill9 kills the server with SIGKILL, as a crash would, and waits until
// the process is gone.
func (s *Server) Kill9() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
	s.clearProcess()
}

// Signal sends sig to the running server.
func (s *Server) Signal(sig os.Signal) {
	s.tb.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		s.tb.Fatalf("wardtest: Signal(%v): server not running", sig)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		s.tb.Fatalf("wardtest: Signal(%v): %v", sig, err)
	}
}

// Env returns the environment for a CLI command against this server: the
// test's environment without WARD_* variables, plus WARD_ADDR, WARD_CACERT
// and WARD_TOKEN (the admin token).
func (s *Server) Env() []string {
	return append(cleanEnv(),
		"WARD_ADDR="+s.Addr(),
		"WARD_CACERT="+s.CACertPath(),
		"WARD_TOKEN="+s.AdminToken(),
	)
}

// Run runs the ward CLI with args and Env, and returns its stdout, stderr
// and exit code. The test fails only if the binary cannot be run at all.
func (s *Server) Run(tb testing.TB, args ...string) (stdout, stderr string, code int) {
	tb.Helper()
	return s.RunEnv(tb, s.Env(), args...)
}

// RunEnv is Run with the environment env instead of Env. Use it to run as
// another caller (a client certificate, no token).
func (s *Server) RunEnv(tb testing.TB, env []string, args ...string) (stdout, stderr string, code int) {
	tb.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()

	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errOut.String(), 0
	case errors.As(err, &exit) && ctx.Err() == nil:
		return out.String(), errOut.String(), exit.ExitCode()
	default:
		tb.Fatalf("wardtest: ward %s: %v (stderr: %s)", strings.Join(args, " "), err, errOut.String())
		return "", "", -1
	}
}
