package agent

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Files of the agent's own certificate in state_dir. A restarted agent (an
// init container run again, a sidecar after a crash) renews with them, so a
// one-use join token is needed only for the very first start.
const (
	stateKeyFile    = "agent.key.pem"
	stateCertFile   = "agent.cert.pem"
	stateBundleFile = "agent.bundle.pem"
	// maxStateFile bounds each state file read back.
	maxStateFile = 256 << 10
)

// saveIdentity writes the agent's certificate, key and bundle to state_dir,
// key first and each file mode 0600. A failure is logged, not returned,
// because the agent keeps working and a restart authenticates afresh.
func (a *Agent) saveIdentity(c *issued) {
	if a.cfg.StateDir == "" {
		return
	}
	w := writer{dir: a.cfg.StateDir}
	err := w.writeAll([]file{
		{name: stateKeyFile, data: c.values["key"], mode: modeSecret},
		{name: stateCertFile, data: c.values["cert"], mode: modeSecret},
		{name: stateBundleFile, data: c.values["bundle"], mode: modeSecret},
	})
	if err != nil {
		a.log.Warn("failed to save the agent certificate, so a restart will use an older saved one or the platform credential", "state_dir", a.cfg.StateDir, "error", err)
	}
}

// loadSavedIdentity returns the certificate saveIdentity wrote, or nil when
// there is none, it has expired, or it cannot be read (then it logs why).
func (a *Agent) loadSavedIdentity() *issued {
	if a.cfg.StateDir == "" {
		return nil
	}
	c, err := readSavedIdentity(a.cfg.StateDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		a.log.Warn("saved agent certificate unusable, authenticating afresh", "state_dir", a.cfg.StateDir, "error", err)
		return nil
	case !a.now().Before(c.expiresAt):
		a.log.Info("saved agent certificate expired, authenticating afresh", "expired_at", c.expiresAt)
		return nil
	}
	a.log.Info("renewing with the saved agent certificate", "serial", c.serial, "expires_at", c.expiresAt)
	return c
}

func readSavedIdentity(dir string) (*issued, error) {
	var data [3][]byte
	for i, name := range []string{stateKeyFile, stateCertFile, stateBundleFile} {
		b, err := readBounded(filepath.Join(dir, name), maxStateFile)
		if err != nil {
			return nil, err
		}
		data[i] = b
	}
	defer clear(data[0])

	block, _ := pem.Decode(data[0])
	if block == nil {
		return nil, fmt.Errorf("%s: missing PEM private key", stateKeyFile)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", stateKeyFile, err)
	}
	key, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", stateKeyFile)
	}

	chain, err := parseCerts(data[1])
	if err != nil || len(chain) == 0 || len(chain[0].URIs) != 1 {
		return nil, fmt.Errorf("%s: missing a certificate with one SPIFFE ID", stateCertFile)
	}
	leaf := chain[0]
	return x509Issued("identity", key, x509Response{
		Certificate: string(data[1]),
		Bundle:      string(data[2]),
		SPIFFEID:    leaf.URIs[0].String(),
		Serial:      leaf.SerialNumber.Text(16),
	})
}

// readBounded reads a whole regular file of at most limit bytes. It does
// not follow a symbolic link, and a FIFO or device is rejected rather than
// waited on.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}

// tlsCertificate returns c as a client certificate for calls to the broker.
func tlsCertificate(c *issued) *tls.Certificate {
	cert := &tls.Certificate{PrivateKey: c.key, Leaf: c.chain[0]}
	for _, der := range c.chain {
		cert.Certificate = append(cert.Certificate, der.Raw)
	}
	return cert
}

// checkStateDir rejects a state_dir that anyone but the agent's user could
// write or replace: such a user could put another workload's saved
// certificate, or a link to it, where the agent reads its own. Every
// directory on the path counts: each must be
// owned by root or the agent's user, writable by no one else (unless it is
// sticky, as /tmp is), and none may be a symbolic link.
func checkStateDir(dir, outputDir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("state_dir %s: %w", dir, err)
	}
	if outputDir != "" {
		if out, err := filepath.Abs(outputDir); err == nil && out == abs {
			return fmt.Errorf("state_dir %s: must differ from output_dir, which the application reads", dir)
		}
	}
	euid := os.Geteuid()
	for p := abs; ; p = filepath.Dir(p) {
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("state_dir %s: %w", dir, err)
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			return fmt.Errorf("state_dir %s: %s is a symbolic link, so name the real directory instead", dir, p)
		case !fi.IsDir():
			return fmt.Errorf("state_dir %s: %s is not a directory", dir, p)
		case p == abs && fi.Mode().Perm()&0o077 != 0:
			return fmt.Errorf("state_dir %s: mode %o lets others use it, want 0700", dir, fi.Mode().Perm())
		case fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0:
			return fmt.Errorf("state_dir %s: %s (mode %o) lets others write it", dir, p, fi.Mode().Perm())
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != euid {
			return fmt.Errorf("state_dir %s: %s is owned by uid %d, neither root nor the agent's uid %d", dir, p, st.Uid, euid)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
