// Package hsm uses keys held in a hardware security module through PKCS#11
// (OASIS PKCS#11 v2.40). It provides a crypto.Signer for ECDSA P-256/P-384
// and RSA keys, a key-encryption key (kek.KEK) that is an AES-256 key inside
// the token, and the functions that create and list ward's objects.
//
// An HSM keeps a bounded pool of logged-in sessions so that operations run
// concurrently. It logs in again after CKR_USER_NOT_LOGGED_IN, and when the
// token or the library fails (device removed, session handles invalid,
// library not initialized) it drops its sessions, initializes the library
// again and retries the operation once. Keys never leave the token: ward
// creates them with CKA_SENSITIVE true and CKA_EXTRACTABLE false.
//
// Security contract: operations fail closed. An unreachable token returns an
// error wrapping ErrUnavailable and kek.ErrSealed. A rejected PIN returns an
// error wrapping ErrPINIncorrect that names the token, and the HSM never
// tries that PIN again, because tokens lock after a few failed logins. The
// PIN appears in no error, and nothing in this package logs.
package hsm

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"

	"ward.dev/ward/crypto/kek"
	"ward.dev/ward/crypto/secret"
)

var (
	// ErrUnavailable reports that the token or its library cannot be
	// reached. Errors that wrap it also wrap kek.ErrSealed.
	ErrUnavailable = errors.New("hsm: token unavailable")
	// ErrPINIncorrect reports that the token rejected the PIN (or that the
	// PIN is locked or expired). The HSM stays unusable until it is reopened
	// with another PIN.
	ErrPINIncorrect = errors.New("hsm: PIN rejected")
	// ErrKeyNotFound reports that no key with the requested label or id
	// exists on the token.
	ErrKeyNotFound = errors.New("hsm: key not found")
	// ErrExists reports that InitKeys found an object with a label it was to
	// create.
	ErrExists = errors.New("hsm: object already exists")
	// ErrClosed reports a call on a closed HSM.
	ErrClosed = errors.New("hsm: closed")
)

// DefaultSessions is the session pool size when Config.Sessions is zero.
const DefaultSessions = 4

// maxSessions bounds Config.Sessions. SoftHSM2 and most network HSMs accept
// far more sessions, but more than this would only queue inside the token.
const maxSessions = 256

// Config names the PKCS#11 library, the token and its user PIN.
type Config struct {
	Module     string       // path of the PKCS#11 library (.so)
	TokenLabel string       // CKA_LABEL of the token, as shown by pkcs11-tool -L
	PIN        secret.Bytes // user PIN, from PINFromFile or PINFromEnv
	Sessions   int          // maximum concurrent sessions, 0 for DefaultSessions
}

// HSM is a connection to one token through one PKCS#11 library. HSM is safe
// for concurrent use. At most Config.Sessions operations run at once, and
// others wait for a free session.
type HSM struct {
	cfg Config
	lib *library
	p11 module
	sem chan struct{}

	closeOnce sync.Once
	done      chan struct{} // closed when Close starts

	mu        sync.Mutex
	connected bool
	slot      uint
	gen       uint64 // library generation that slot and idle belong to
	loggedIn  bool
	idle      []pkcs11.SessionHandle
	loginErr  error // a rejected PIN, returned by every later call
	closed    bool
}

// option adjusts an HSM in tests.
type option func(*HSM)

// withModule wraps the PKCS#11 calls, so tests can inject failures.
func withModule(wrap func(module) module) option {
	return func(h *HSM) { h.p11 = wrap(h.p11) }
}

// Open loads the library, finds the token by label, opens a session and logs
// in, so that a wrong module path, token label or PIN fails here.
func Open(cfg Config) (*HSM, error) {
	return open(cfg)
}

func open(cfg Config, opts ...option) (*HSM, error) {
	switch {
	case cfg.Module == "":
		return nil, errors.New("hsm.Open: missing PKCS#11 library path")
	case cfg.TokenLabel == "":
		return nil, errors.New("hsm.Open: missing token label")
	case cfg.PIN.Len() == 0:
		return nil, errors.New("hsm.Open: missing PIN")
	case cfg.Sessions < 0 || cfg.Sessions > maxSessions:
		return nil, fmt.Errorf("hsm.Open: %d sessions out of range [1, %d]", cfg.Sessions, maxSessions)
	}
	if cfg.Sessions == 0 {
		cfg.Sessions = DefaultSessions
	}

	lib, err := loadLibrary(cfg.Module)
	if err != nil {
		return nil, &unavailableError{token: fmt.Sprintf("token %q (PKCS#11 library %s)", cfg.TokenLabel, cfg.Module), cause: err}
	}
	h := &HSM{cfg: cfg, lib: lib, p11: lib.ctx, sem: make(chan struct{}, cfg.Sessions), done: make(chan struct{})}
	for _, opt := range opts {
		opt(h)
	}

	if err := h.do(func(pkcs11.SessionHandle, uint64) error { return nil }); err != nil {
		lib.release()
		return nil, err
	}
	return h, nil
}

// String names the token and library for error messages.
func (h *HSM) String() string {
	return fmt.Sprintf("token %q (PKCS#11 library %s)", h.cfg.TokenLabel, h.cfg.Module)
}

// Close rejects new operations with ErrClosed, waits for running ones,
// closes the sessions and unloads the library when no other HSM in the
// process uses it. Calling Close again does nothing.
func (h *HSM) Close() error {
	h.closeOnce.Do(func() {
		close(h.done)
		for range cap(h.sem) {
			h.sem <- struct{}{}
		}

		h.lib.calls.RLock()
		h.mu.Lock()
		h.closed = true
		if gen, ok := h.lib.state(); ok && gen == h.gen && h.connected {
			for _, sh := range h.idle {
				_ = h.p11.CloseSession(sh)
			}
		}
		h.idle = nil
		h.mu.Unlock()
		h.lib.calls.RUnlock()

		h.lib.release()
	})
	return nil
}

// do runs op on a logged-in session. After CKR_USER_NOT_LOGGED_IN it logs in
// and runs op again. After a lost connection it resets the library and runs
// op once more on a new session. op receives the library generation, so
// callers can tell when cached object handles became invalid.
func (h *HSM) do(op func(sh pkcs11.SessionHandle, gen uint64) error) error {
	select {
	case <-h.done:
		return ErrClosed
	default:
	}
	select {
	case h.sem <- struct{}{}:
	case <-h.done:
		return ErrClosed
	}
	defer func() { <-h.sem }()

	var lastErr error
	for range 2 {
		sh, gen, err := h.begin()
		if err != nil {
			return err
		}

		err = op(sh, gen)
		if isCode(err, pkcs11.CKR_USER_NOT_LOGGED_IN) {
			if lerr := h.relogin(sh, gen); lerr != nil {
				h.drop(sh, gen)
				h.lib.calls.RUnlock()
				return lerr
			}
			err = op(sh, gen)
		}
		alive := !isConnectionLost(err) || h.sessionAlive(sh, err)
		if alive {
			h.release(sh, gen)
		}
		h.lib.calls.RUnlock()
		if alive {
			return err
		}

		lastErr = err
		h.lost(gen)
	}
	return h.unavailable(lastErr)
}

// begin takes the library's call lock for reading and a session. When the
// library must be reset first, it resets it without holding the lock and
// tries once more. On success the caller must release lib.calls.
func (h *HSM) begin() (pkcs11.SessionHandle, uint64, error) {
	for range 2 {
		h.lib.calls.RLock()
		sh, gen, err := h.acquire()
		if err == nil {
			return sh, gen, nil
		}
		h.lib.calls.RUnlock()

		var needed *resetNeeded
		if !errors.As(err, &needed) {
			return 0, 0, err
		}
		if rerr := h.lib.reset(needed.generation); rerr != nil {
			return 0, 0, h.unavailable(rerr)
		}
	}
	return 0, 0, h.unavailable(fmt.Errorf("%w: no token labeled %q after initializing the library again", errTokenNotFound, h.cfg.TokenLabel))
}

// resetNeeded tells begin to reset the library, which must happen outside
// the call lock.
type resetNeeded struct {
	generation uint64
}

func (e *resetNeeded) Error() string { return "hsm: library reset needed" }

// sessionAlive reports whether a session that failed with the ambiguous
// CKR_GENERAL_ERROR still works. SoftHSM2 2.6 returns CKR_GENERAL_ERROR for
// an AES-GCM tag mismatch, which must not reset the library.
func (h *HSM) sessionAlive(sh pkcs11.SessionHandle, err error) bool {
	if !isCode(err, pkcs11.CKR_GENERAL_ERROR) {
		return false
	}
	_, infoErr := h.p11.GetSessionInfo(sh)
	return infoErr == nil
}

// acquire returns an idle session or opens a new one, connecting to the
// token first when needed.
func (h *HSM) acquire() (pkcs11.SessionHandle, uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()

	if h.closed {
		return 0, 0, ErrClosed
	}
	if h.loginErr != nil {
		return 0, 0, h.loginErr
	}
	if err := h.connectLocked(); err != nil {
		return 0, 0, err
	}

	if n := len(h.idle); n > 0 {
		sh := h.idle[n-1]
		h.idle = h.idle[:n-1]
		return sh, h.gen, nil
	}

	sh, err := h.p11.OpenSession(h.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		if !isConnectionLost(err) {
			return 0, 0, h.unavailable(fmt.Errorf("opening session: %w", err))
		}
		h.connected = false
		if h.lib.resetAllowed() {
			return 0, 0, &resetNeeded{generation: h.gen}
		}
		return 0, 0, h.unavailable(fmt.Errorf("opening session: %w", err))
	}
	if !h.loggedIn {
		if err := h.loginLocked(sh); err != nil {
			_ = h.p11.CloseSession(sh)
			return 0, 0, err
		}
	}
	return sh, h.gen, nil
}

// connectLocked finds the token's slot when the library generation changed.
// It returns resetNeeded when a failed reset left the library uninitialized,
// or when the token is missing and a reset may find it. The caller holds mu.
func (h *HSM) connectLocked() error {
	gen, initialized := h.lib.state()
	if !initialized {
		return &resetNeeded{generation: gen}
	}
	if h.connected && gen == h.gen {
		return nil
	}

	// Sessions of an older generation died with C_Finalize. Their handles
	// may already name other sessions, so they are forgotten, not closed.
	h.idle = nil
	h.loggedIn = false
	slot, err := h.findSlot()
	if errors.Is(err, errTokenNotFound) && h.lib.resetAllowed() {
		// Some libraries, SoftHSM2 among them, look for tokens only in
		// C_Initialize, so a token that came back is found after a reset.
		return &resetNeeded{generation: gen}
	}
	if err != nil {
		return err
	}
	h.slot, h.gen, h.connected = slot, gen, true
	return nil
}

// errTokenNotFound is the cause of an unavailable error when no slot holds
// a token with the configured label.
var errTokenNotFound = errors.New("token not found")

func (h *HSM) findSlot() (uint, error) {
	slots, err := h.p11.GetSlotList(true)
	if err != nil {
		return 0, h.unavailable(fmt.Errorf("listing slots: %w", err))
	}
	var found []uint
	for _, slot := range slots {
		info, err := h.p11.GetTokenInfo(slot)
		if err != nil {
			continue
		}
		if trimLabel(info.Label) == h.cfg.TokenLabel {
			found = append(found, slot)
		}
	}
	switch len(found) {
	case 0:
		return 0, h.unavailable(fmt.Errorf("%w: no token labeled %q among %d slots with a token", errTokenNotFound, h.cfg.TokenLabel, len(slots)))
	case 1:
		return found[0], nil
	}
	return 0, fmt.Errorf("hsm: %d tokens are labeled %q; give each token a unique label", len(found), h.cfg.TokenLabel)
}

// trimLabel removes the blank padding of a 32-byte PKCS#11 label.
func trimLabel(label string) string {
	return strings.TrimRight(label, " \x00")
}

// loginLocked logs the user in. A rejected PIN is stored and returned for
// every later call, so the same wrong PIN never reaches the token twice. The
// caller holds mu.
func (h *HSM) loginLocked(sh pkcs11.SessionHandle) error {
	// NOTE: miekg/pkcs11 takes the PIN as a Go string, which cannot be
	// cleared, so a copy of the PIN stays in memory until it is collected.
	pin := h.cfg.PIN.Reveal()
	err := h.p11.Login(sh, pkcs11.CKU_USER, string(pin))
	clear(pin)

	switch {
	case err == nil, isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN):
		h.loggedIn = true
		return nil
	case isPINError(err):
		h.loginErr = fmt.Errorf("%w by %s (%v): check the PIN file or variable before trying again, because the token locks after repeated failures", ErrPINIncorrect, h, err)
		return h.loginErr
	case isConnectionLost(err):
		h.connected = false
		return h.unavailable(fmt.Errorf("login: %w", err))
	}
	return fmt.Errorf("hsm: login to %s failed: %w", h, err)
}

// relogin logs in again after the token reported CKR_USER_NOT_LOGGED_IN.
func (h *HSM) relogin(sh pkcs11.SessionHandle, gen uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.loginErr != nil {
		return h.loginErr
	}
	if gen != h.gen {
		return h.unavailable(errors.New("library reset during login"))
	}
	h.loggedIn = false
	return h.loginLocked(sh)
}

// release returns a session to the pool, or closes it when the pool moved on.
func (h *HSM) release(sh pkcs11.SessionHandle, gen uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || gen != h.gen || !h.connected {
		return
	}
	h.idle = append(h.idle, sh)
}

// drop closes a session that must not be reused.
func (h *HSM) drop(sh pkcs11.SessionHandle, gen uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if gen == h.gen && h.connected {
		_ = h.p11.CloseSession(sh)
	}
}

// lost drops the sessions of generation gen and resets the library.
func (h *HSM) lost(gen uint64) {
	h.mu.Lock()
	if gen == h.gen {
		h.connected = false
		h.idle = nil
	}
	h.mu.Unlock()

	// A failed reset leaves the library uninitialized, so the next acquire
	// tries again and reports the error.
	_ = h.lib.reset(gen)
}

// unavailable wraps err as ErrUnavailable and kek.ErrSealed for this token.
func (h *HSM) unavailable(err error) error {
	return &unavailableError{token: h.String(), cause: err}
}

// unavailableError is an error of an unreachable token. It matches both
// ErrUnavailable and kek.ErrSealed, so KEK callers return 503.
type unavailableError struct {
	token string
	cause error
}

func (e *unavailableError) Error() string {
	return fmt.Sprintf("hsm: %s unavailable: %v", e.token, e.cause)
}

func (e *unavailableError) Is(target error) bool {
	return target == ErrUnavailable || target == kek.ErrSealed
}

func (e *unavailableError) Unwrap() error { return e.cause }
