package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"log/slog"
)

// writeChanged writes the files of the named credentials, then renders
// every template. All templates are rendered before any is written, so one
// that fails leaves every rendered file as it was. The error names the
// credential or template and the file.
func (a *Agent) writeChanged(names []string) error {
	a.mu.Lock()
	snapshot := make(map[string]*issued, len(a.creds))
	for k, v := range a.creds {
		snapshot[k] = v
	}
	a.mu.Unlock()

	err := a.writeFiles(names, snapshot)

	a.mu.Lock()
	a.writeErr = err
	if err == nil {
		for _, name := range names {
			a.written[name] = snapshot[name]
		}
	}
	a.mu.Unlock()
	return err
}

func (a *Agent) writeFiles(names []string, snapshot map[string]*issued) error {
	for _, name := range names {
		cr := a.credential(name)
		c := snapshot[name]
		if cr == nil || c == nil {
			continue
		}
		files := make([]file, 0, len(c.values))
		for _, field := range cr.kind.fields() {
			files = append(files, file{name: cr.file(field), data: c.values[field], mode: fieldMode(cr, field)})
		}
		if err := a.out.writeAll(files); err != nil {
			return fmt.Errorf("credential %q: %w", name, err)
		}
		a.log.Info("credential written", "credential", c)
	}

	if len(a.tmpls) == 0 {
		return nil
	}
	data := a.templateData(snapshot)
	rendered := make([]file, 0, len(a.tmpls))
	for _, ct := range a.tmpls {
		out, err := ct.render(data)
		if err != nil {
			return err
		}
		mode := os.FileMode(modeSecret)
		if ct.cfg.Mode != 0 {
			mode = os.FileMode(ct.cfg.Mode)
		}
		rendered = append(rendered, file{name: ct.cfg.Destination, data: out, mode: mode})
	}
	for i, f := range rendered {
		if err := a.out.writeAll([]file{f}); err != nil {
			return fmt.Errorf("template %q: %w", a.tmpls[i].cfg.Name, err)
		}
	}
	a.log.Info("templates rendered", "count", len(rendered))
	return nil
}

func (a *Agent) credential(name string) *Credential {
	for i := range a.cfg.Credentials {
		if a.cfg.Credentials[i].Name == name {
			return &a.cfg.Credentials[i]
		}
	}
	return nil
}

func (a *Agent) templateData(creds map[string]*issued) TemplateData {
	d := TemplateData{Creds: map[string]map[string]string{}}
	a.mu.Lock()
	if a.identity != nil {
		d.SPIFFEID = a.identity.spiffeID
	}
	a.mu.Unlock()
	for name, c := range creds {
		fields := map[string]string{
			"spiffe_id":  c.spiffeID,
			"lease_id":   c.leaseID,
			"expires_at": c.expiresAt.UTC().Format(time.RFC3339),
		}
		for k, v := range c.values {
			fields[k] = string(v)
		}
		d.Creds[name] = fields
	}
	return d
}

// notify informs the application that new credentials are on disk: the
// configured signal to the process in notify.pid_file, or to the child (or
// a restart of it) in --exec mode.
func (a *Agent) notify() {
	sig := signals[a.cfg.Notify.Signal]
	if a.child != nil {
		a.child.changed(sig, a.cfg.Notify.OnExec == "restart", a.childEnv())
		return
	}
	if a.cfg.Notify.PIDFile == "" {
		return
	}
	pid, err := pidFromFile(a.cfg.Notify.PIDFile)
	if err != nil {
		a.log.Warn("application not signalled: no process id", "pid_file", a.cfg.Notify.PIDFile, "error", err)
		return
	}
	if err := syscall.Kill(pid, sig); err != nil {
		a.log.Warn("application not signalled", "pid", pid, "signal", a.cfg.Notify.Signal, "error", err)
		return
	}
	a.log.Info("application signalled", "pid", pid, "signal", a.cfg.Notify.Signal)
}

// childEnv is the environment of an --exec child: the agent's own, plus
// WARD_SECRETS_DIR and for each credential field WARD_<NAME>_<FIELD>_FILE
// with the path of its file. Short values (a JWT-SVID's token, a database
// login's username, password and DSN) are also given by value in
// WARD_<NAME>_<FIELD>; keys and certificates only as files.
func (a *Agent) childEnv() []string {
	env := append(os.Environ(), "WARD_SECRETS_DIR="+a.cfg.OutputDir)
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range a.cfg.Credentials {
		cr := &a.cfg.Credentials[i]
		prefix := "WARD_" + envName(cr.Name) + "_"
		for _, field := range cr.kind.fields() {
			env = append(env, prefix+envName(field)+"_FILE="+a.cfg.OutputDir+"/"+cr.file(field))
		}
		c := a.creds[cr.Name]
		if c == nil {
			continue
		}
		for _, field := range []string{"token", "username", "password", "dsn"} {
			if v, ok := c.values[field]; ok {
				env = append(env, prefix+envName(field)+"="+string(v))
			}
		}
	}
	return env
}

func envName(s string) string {
	return strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(s))
}

// ExitError is the exit of the --exec child that ended Run.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("application exited with code %d", e.Code) }

// child is the application in --exec mode. It is safe for concurrent use.
type child struct {
	argv []string
	log  *slog.Logger

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	exit    chan error // receives the child's end when not restarted by us
	stopped bool
}

// start runs the child with env. Its exit, unless caused by a restart,
// is sent on the returned channel.
func (c *child) start(env []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exit == nil {
		c.exit = make(chan error, 1)
	}
	cmd := exec.Command(c.argv[0], c.argv[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", c.argv[0], err)
	}
	done := make(chan struct{})
	c.cmd, c.done = cmd, done
	c.log.Info("application started", "pid", cmd.Process.Pid, "command", c.argv[0])
	go func() {
		err := cmd.Wait()
		close(done)
		c.mu.Lock()
		restarting := c.cmd != cmd || c.stopped
		c.mu.Unlock()
		if restarting {
			return
		}
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			err = &ExitError{Code: exitErr.ExitCode()}
		} else if err == nil {
			err = &ExitError{Code: 0}
		}
		c.exit <- err
	}()
	return nil
}

// changed signals or restarts the running child.
func (c *child) changed(sig syscall.Signal, restart bool, env []string) {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if cmd == nil {
		if err := c.start(env); err != nil {
			c.log.Error("application not started", "error", err)
		}
		return
	}
	if !restart {
		if err := cmd.Process.Signal(sig); err != nil {
			c.log.Warn("application not signalled", "pid", cmd.Process.Pid, "error", err)
			return
		}
		c.log.Info("application signalled", "pid", cmd.Process.Pid, "signal", sig.String())
		return
	}
	c.mu.Lock()
	c.cmd = nil
	c.mu.Unlock()
	terminate(cmd, done)
	if err := c.start(env); err != nil {
		c.log.Error("application not restarted", "error", err)
	}
}

// stop terminates the child and waits for it.
func (c *child) stop() {
	c.mu.Lock()
	c.stopped = true
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if cmd != nil {
		terminate(cmd, done)
	}
}

// exited returns the channel that receives the child's own exit.
func (c *child) exited() <-chan error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exit == nil {
		c.exit = make(chan error, 1)
	}
	return c.exit
}

// terminate sends SIGTERM, and SIGKILL after ten seconds.
func terminate(cmd *exec.Cmd, done <-chan struct{}) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
