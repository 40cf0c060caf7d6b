package hsm

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/miekg/pkcs11"
)

// module is the part of the PKCS#11 API that ward calls on slots, sessions
// and objects. *pkcs11.Ctx implements it, and tests wrap it to inject token
// failures. C_Initialize and C_Finalize are called on the library directly.
type module interface {
	GetSlotList(tokenPresent bool) ([]uint, error)
	GetTokenInfo(slotID uint) (pkcs11.TokenInfo, error)
	OpenSession(slotID uint, flags uint) (pkcs11.SessionHandle, error)
	CloseSession(sh pkcs11.SessionHandle) error
	GetSessionInfo(sh pkcs11.SessionHandle) (pkcs11.SessionInfo, error)
	Login(sh pkcs11.SessionHandle, userType uint, pin string) error
	FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error
	FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error)
	FindObjectsFinal(sh pkcs11.SessionHandle) error
	GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error)
	SignInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Sign(sh pkcs11.SessionHandle, message []byte) ([]byte, error)
	EncryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Encrypt(sh pkcs11.SessionHandle, message []byte) ([]byte, error)
	DecryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Decrypt(sh pkcs11.SessionHandle, cipher []byte) ([]byte, error)
	CreateObject(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	GenerateKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	GenerateKeyPair(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, public, private []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error)
}

var _ module = (*pkcs11.Ctx)(nil)

// library is one loaded PKCS#11 library, shared by every HSM in the process
// that names the same path. A library may be initialized only once per
// process (PKCS#11 v2.40 section 5.4, C_Initialize), so it is loaded once and
// reference counted, and a reset after a failure finalizes and initializes it
// for all its users together. A library is safe for concurrent use.
type library struct {
	path string

	// calls is held for reading around every PKCS#11 call on the library's
	// sessions and for writing around C_Finalize, because PKCS#11 v2.40
	// leaves C_Finalize undefined while other threads are inside calls.
	calls sync.RWMutex

	mu          sync.Mutex
	ctx         *pkcs11.Ctx
	refs        int
	initialized bool
	generation  uint64 // increases with every reset, which ends all older sessions
	lastReset   time.Time
}

// minResetInterval spaces out the resets that look for a missing token, so a
// missing token does not reset the library, and the sessions of other
// tokens on it, on every call. A variable so tests can set it to zero.
var minResetInterval = time.Second

// resetAllowed reports whether minResetInterval has passed since the last
// reset.
func (lib *library) resetAllowed() bool {
	lib.mu.Lock()
	defer lib.mu.Unlock()
	return time.Since(lib.lastReset) >= minResetInterval
}

var (
	librariesMu sync.Mutex
	libraries   = map[string]*library{}
)

// loadLibrary loads and initializes the PKCS#11 library at path, or returns
// the one already loaded, and counts a reference to it.
func loadLibrary(path string) (*library, error) {
	librariesMu.Lock()
	defer librariesMu.Unlock()

	if lib, ok := libraries[path]; ok {
		lib.mu.Lock()
		lib.refs++
		lib.mu.Unlock()
		return lib, nil
	}

	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("hsm: loading PKCS#11 library %s failed: file missing or not a PKCS#11 library", path)
	}
	lib := &library{path: path, ctx: ctx, refs: 1}
	if err := lib.initializeLocked(); err != nil {
		ctx.Destroy()
		return nil, err
	}
	libraries[path] = lib
	return lib, nil
}

// initializeLocked calls C_Initialize. The caller holds mu or owns lib alone.
func (lib *library) initializeLocked() error {
	err := lib.ctx.Initialize()
	if err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		return fmt.Errorf("hsm: initializing PKCS#11 library %s: %w", lib.path, err)
	}
	lib.initialized = true
	return nil
}

// state returns the current generation and whether the library is usable.
func (lib *library) state() (generation uint64, initialized bool) {
	lib.mu.Lock()
	defer lib.mu.Unlock()
	return lib.generation, lib.initialized
}

// reset finalizes and initializes the library after a failure seen in
// generation seen. When another caller already reset that generation and the
// library works, reset does nothing, so a burst of failures causes one reset.
func (lib *library) reset(seen uint64) error {
	lib.calls.Lock()
	defer lib.calls.Unlock()
	lib.mu.Lock()
	defer lib.mu.Unlock()

	if lib.generation == seen {
		if lib.initialized {
			_ = lib.ctx.Finalize()
		}
		lib.initialized = false
		lib.generation++
		lib.lastReset = time.Now()
	}
	if lib.initialized {
		return nil
	}
	return lib.initializeLocked()
}

// release drops a reference and unloads the library with the last one.
func (lib *library) release() {
	librariesMu.Lock()
	defer librariesMu.Unlock()
	lib.calls.Lock()
	defer lib.calls.Unlock()
	lib.mu.Lock()
	defer lib.mu.Unlock()

	lib.refs--
	if lib.refs > 0 {
		return
	}
	if lib.initialized {
		_ = lib.ctx.Finalize()
	}
	lib.ctx.Destroy()
	delete(libraries, lib.path)
}

// isCode reports whether err is the PKCS#11 return value code.
func isCode(err error, code uint) bool {
	var p11 pkcs11.Error
	return errors.As(err, &p11) && uint(p11) == code
}

// isConnectionLost reports whether err means the token, the slot or the
// library stopped working, so sessions and object handles must be dropped
// and the library initialized again.
func isConnectionLost(err error) bool {
	var p11 pkcs11.Error
	if !errors.As(err, &p11) {
		return false
	}
	switch uint(p11) {
	case pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_MEMORY,
		pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_SLOT_ID_INVALID, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED,
		pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_OBJECT_HANDLE_INVALID:
		return true
	}
	return false
}

// isPINError reports whether err means the PIN was rejected. Retrying would
// count towards the token's lockout, so such errors are final.
func isPINError(err error) bool {
	return isCode(err, pkcs11.CKR_PIN_INCORRECT) || isCode(err, pkcs11.CKR_PIN_LOCKED) ||
		isCode(err, pkcs11.CKR_PIN_INVALID) || isCode(err, pkcs11.CKR_PIN_LEN_RANGE) ||
		isCode(err, pkcs11.CKR_PIN_EXPIRED)
}
