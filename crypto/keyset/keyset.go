// Package keyset keeps ward's data-encryption keys: a Tink AEAD keyset of
// AES-256-GCM keys (NIST SP 800-38D) whose serialized form exists on disk only
// sealed by a key-encryption key ([kek.KEK]).
//
// File layout: the keyset file is a Tink EncryptedKeyset protocol buffer as
// written by keyset.Handle.WriteWithAssociatedData, sealed by the KEK with the
// file's base name as associated data, so a sealed keyset copied to another
// name does not open. The file is replaced atomically (temporary file, fsync,
// rename, directory fsync) and has mode 0600. ward leaves out the optional
// keyset_info field, which Tink would store unauthenticated, so every byte of
// the file is covered by the KEK's authentication tag or by protobuf framing.
//
// Ciphertext layout (Tink's TINK output prefix): 1 byte 0x01, the 4-byte
// big-endian id of the key that encrypted, a random 12-byte IV, the encrypted
// data, a 16-byte tag. Decrypt picks the key by id, so ciphertexts written
// before a rotation stay readable.
//
// Rotation: Rotate adds a new primary key and keeps the old ones for
// decryption, Rewrap reseals the same keys under another KEK, and
// RotateIfDue applies a Policy of maximum key age and encryption count. Key
// creation times and encryption counts live in a usage file next to the
// keyset (path+".usage.json", JSON, no secrets), and a lock file
// (path+".lock") serializes writers across processes.
//
// Security contract: Open fails closed with an error wrapping kek.ErrSealed
// when the KEK is unreachable or cannot unseal the file. A keyset holding any
// key other than AES-256-GCM is rejected. Nothing in this package logs, and no
// error contains key material.
package keyset

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/aead/aesgcm"
	tinkkeyset "github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/tink"
	"google.golang.org/protobuf/proto"

	"ward.dev/ward/crypto/kek"
)

// ErrCorrupt reports a keyset file that is not a sealed Tink keyset at all, so
// no KEK was asked to unseal it.
var ErrCorrupt = errors.New("keyset: file is not a sealed keyset")

// maxKeys bounds the number of keys in a keyset. At one rotation every 90
// days it is reached after 250 years.
const maxKeys = 1000

// maxFileSize bounds the keyset file read into memory. A keyset of 1000 keys
// is about 80 KB.
const maxFileSize = 1 << 20

// Keyset is a Tink AEAD keyset of AES-256-GCM keys, sealed on disk by a KEK.
// Keyset is safe for concurrent use.
type Keyset struct {
	path string
	now  func() time.Time

	// mu guards the fields below: Encrypt and Decrypt take it for reading,
	// Rotate and Rewrap for writing.
	mu        sync.RWMutex
	kek       kek.KEK
	handle    *tinkkeyset.Handle
	aead      tink.AEAD
	primaryID uint32
	digest    [sha256.Size]byte // of the sealed file as last read or written

	// usageMu guards the usage counters. Lock order: mu, usageMu, lock file.
	usageMu sync.Mutex
	usage   map[uint32]usageEntry
	next    uint64 // number of the next encryption with the primary key
	ceiling uint64 // end of the block of encryptions this process claimed
}

// Option configures Create and Open.
type Option func(*Keyset)

// WithClock sets the clock that dates new keys and computes key ages. The
// default is time.Now.
func WithClock(now func() time.Time) Option {
	return func(ks *Keyset) { ks.now = now }
}

// Create generates a keyset with one AES-256-GCM key, seals it with k and
// writes it to path with mode 0600. It refuses to replace an existing file.
// Next to it, Create writes the usage file path+".usage.json".
func Create(path string, k kek.KEK, opts ...Option) (*Keyset, error) {
	if k == nil {
		return nil, errors.New("keyset.Create: nil KEK")
	}
	handle, err := tinkkeyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("keyset.Create: generating key: %v", err)
	}
	ks, err := newKeyset(path, k, handle, opts)
	if err != nil {
		return nil, fmt.Errorf("keyset.Create: %w", err)
	}

	sealed, err := seal(handle, k, path)
	if err != nil {
		return nil, fmt.Errorf("keyset.Create: %w", err)
	}
	unlock, err := lockFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyset.Create: %w", err)
	}
	defer unlock()

	// The usage file goes first: a usage file without its keyset is
	// harmless, a keyset without usage only has estimated ages.
	ks.usage[ks.primaryID] = usageEntry{ID: ks.primaryID, Created: ks.now().UTC()}
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("keyset.Create: %s already exists; refusing to overwrite it: %w", path, fs.ErrExist)
	}
	if err := writeUsage(path, ks.usage, ks.keyIDs()); err != nil {
		return nil, fmt.Errorf("keyset.Create: %w", err)
	}
	if err := writeFile(path, sealed, false); err != nil {
		return nil, fmt.Errorf("keyset.Create: %w", err)
	}
	ks.digest = sha256.Sum256(sealed)
	return ks, nil
}

// Open reads the sealed keyset at path and unseals it with k. The error wraps
// kek.ErrSealed when k is unreachable or cannot unseal the file (wrong KEK,
// damaged or renamed file), ErrCorrupt when the file is not a sealed keyset,
// and fs.ErrNotExist when the file is missing.
func Open(path string, k kek.KEK, opts ...Option) (*Keyset, error) {
	if k == nil {
		return nil, errors.New("keyset.Open: nil KEK")
	}
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyset.Open: %w", err)
	}
	handle, err := unseal(data, k, path)
	if err != nil {
		return nil, fmt.Errorf("keyset.Open: %w", err)
	}
	ks, err := newKeyset(path, k, handle, opts)
	if err != nil {
		return nil, fmt.Errorf("keyset.Open: %s: %w", path, err)
	}
	ks.digest = sha256.Sum256(data)

	usage, err := readUsage(path)
	if err != nil {
		return nil, fmt.Errorf("keyset.Open: %w", err)
	}
	modTime := fileModTime(path).UTC()
	for _, id := range ks.keyIDs() {
		e, ok := usage[id]
		if !ok {
			e = usageEntry{ID: id, Created: modTime, Estimated: true}
		}
		ks.usage[id] = e
	}
	ks.next = ks.usage[ks.primaryID].Encryptions
	ks.ceiling = ks.next
	return ks, nil
}

// newKeyset checks that every key in handle is AES-256-GCM and builds the
// AEAD primitive.
func newKeyset(path string, k kek.KEK, handle *tinkkeyset.Handle, opts []Option) (*Keyset, error) {
	primitive, primaryID, err := primitiveFor(handle)
	if err != nil {
		return nil, err
	}
	ks := &Keyset{
		path:      path,
		now:       time.Now,
		kek:       k,
		handle:    handle,
		aead:      primitive,
		primaryID: primaryID,
		usage:     map[uint32]usageEntry{},
	}
	for _, opt := range opts {
		opt(ks)
	}
	return ks, nil
}

// keyIDs returns the ids of all keys. The caller holds mu or owns ks alone.
func (ks *Keyset) keyIDs() []uint32 {
	ids := make([]uint32, 0, ks.handle.Len())
	for i := range ks.handle.Len() {
		if entry, err := ks.handle.Entry(i); err == nil {
			ids = append(ids, entry.KeyID())
		}
	}
	return ids
}

// primitiveFor returns the AEAD of handle and the id of its primary key.
func primitiveFor(handle *tinkkeyset.Handle) (tink.AEAD, uint32, error) {
	if handle.Len() > maxKeys {
		return nil, 0, fmt.Errorf("keyset has %d keys, more than the maximum of %d", handle.Len(), maxKeys)
	}
	for i := range handle.Len() {
		entry, err := handle.Entry(i)
		if err != nil {
			return nil, 0, fmt.Errorf("reading key %d: %v", i, err)
		}
		key, ok := entry.Key().(*aesgcm.Key)
		if !ok {
			return nil, 0, fmt.Errorf("key %d is %T, want AES-GCM", entry.KeyID(), entry.Key())
		}
		params, ok := key.Parameters().(*aesgcm.Parameters)
		if !ok || params.KeySizeInBytes() != 32 || params.IVSizeInBytes() != 12 || params.TagSizeInBytes() != 16 {
			return nil, 0, fmt.Errorf("key %d is not AES-256-GCM with a 12-byte IV and 16-byte tag", entry.KeyID())
		}
	}
	primary, err := handle.Primary()
	if err != nil {
		return nil, 0, fmt.Errorf("keyset has no primary key: %v", err)
	}
	primitive, err := aead.New(handle)
	if err != nil {
		return nil, 0, fmt.Errorf("building AEAD: %v", err)
	}
	return primitive, primary.KeyID(), nil
}

// Encrypt encrypts plaintext with the primary key. The ciphertext
// authenticates associatedData, which Decrypt must be given unchanged.
// Encrypt counts the encryption in the usage file, and fails when it cannot
// record the count, so that no key is used past its limit unnoticed.
func (ks *Keyset) Encrypt(plaintext, associatedData []byte) ([]byte, error) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()

	if err := ks.countEncryption(); err != nil {
		return nil, fmt.Errorf("keyset.Encrypt: %w", err)
	}
	return ks.aead.Encrypt(plaintext, associatedData)
}

// countEncryption takes the next encryption number of the primary key and,
// when this process's claimed block is used up, claims another usageReserve
// numbers in the usage file. The caller holds mu for reading.
func (ks *Keyset) countEncryption() error {
	ks.usageMu.Lock()
	defer ks.usageMu.Unlock()

	if ks.next >= ks.ceiling {
		if err := ks.claimBlock(); err != nil {
			return err
		}
	}
	ks.next++
	return nil
}

// claimBlock adds usageReserve to the primary key's count in the usage file
// and makes the numbers in between this process's block. The caller holds
// usageMu.
func (ks *Keyset) claimBlock() error {
	unlock, err := lockFile(ks.path)
	if err != nil {
		return err
	}
	defer unlock()

	disk, err := readUsage(ks.path)
	if err != nil {
		return err
	}
	merged := mergeUsage(disk, ks.usage)
	e := merged[ks.primaryID]
	e.ID = ks.primaryID
	start := e.Encryptions
	e.Encryptions += usageReserve
	merged[ks.primaryID] = e

	// Entries of keys this process does not know stay: another process may
	// have rotated the keyset since this one opened it.
	if err := writeUsage(ks.path, merged, slices.Collect(maps.Keys(merged))); err != nil {
		return fmt.Errorf("recording key usage: %w", err)
	}
	ks.usage = merged
	ks.next = start
	ks.ceiling = e.Encryptions
	return nil
}

// Decrypt decrypts a ciphertext produced by Encrypt with any key of this
// keyset, including keys that are no longer primary.
func (ks *Keyset) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.aead.Decrypt(ciphertext, associatedData)
}

// Path returns the path of the sealed keyset file.
func (ks *Keyset) Path() string { return ks.path }

// associatedData binds a sealed keyset to its file name.
func associatedData(path string) []byte {
	return []byte(filepath.Base(path))
}

// seal serializes handle encrypted under k.
func seal(handle *tinkkeyset.Handle, k kek.KEK, path string) ([]byte, error) {
	rec := &recordingKEK{kek: k}
	w := &sealedWriter{}
	if err := handle.WriteWithAssociatedData(w, rec, associatedData(path)); err != nil {
		if rec.err != nil {
			return nil, fmt.Errorf("sealing keyset %s with %s: %w", path, describe(k), rec.err)
		}
		return nil, fmt.Errorf("sealing keyset %s: %v", path, err)
	}
	return w.data, nil
}

// sealedWriter serializes an EncryptedKeyset without its keyset_info.
type sealedWriter struct {
	data []byte
}

func (w *sealedWriter) Write(*tinkpb.Keyset) error {
	return errors.New("keyset: refusing to write a keyset in the clear")
}

func (w *sealedWriter) WriteEncrypted(ek *tinkpb.EncryptedKeyset) error {
	data, err := proto.Marshal(&tinkpb.EncryptedKeyset{EncryptedKeyset: ek.GetEncryptedKeyset()})
	if err != nil {
		return err
	}
	w.data = data
	return nil
}

// unseal parses and decrypts a sealed keyset.
func unseal(data []byte, k kek.KEK, path string) (*tinkkeyset.Handle, error) {
	rec := &recordingKEK{kek: k}
	handle, err := tinkkeyset.ReadWithAssociatedData(tinkkeyset.NewBinaryReader(bytes.NewReader(data)), rec, associatedData(path))
	if err == nil {
		return handle, nil
	}

	switch {
	case !rec.called:
		return nil, fmt.Errorf("%s: %w: %v", path, ErrCorrupt, err)
	case errors.Is(rec.err, kek.ErrSealed):
		return nil, fmt.Errorf("unsealing keyset %s: %w", path, rec.err)
	case rec.err != nil:
		return nil, fmt.Errorf("unsealing keyset %s with %s failed (wrong KEK, or the file was damaged or renamed): %w: %v", path, describe(k), kek.ErrSealed, rec.err)
	default:
		return nil, fmt.Errorf("keyset %s unsealed but invalid: %w: %v", path, ErrCorrupt, err)
	}
}

// recordingKEK passes calls to a KEK and keeps its error, because Tink
// flattens KEK errors to text and callers must tell kek.ErrSealed apart.
// A recordingKEK serves one seal or unseal call and is not safe for
// concurrent use.
type recordingKEK struct {
	kek    kek.KEK
	called bool
	err    error
}

func (r *recordingKEK) Encrypt(plaintext, associatedData []byte) ([]byte, error) {
	r.called = true
	ct, err := r.kek.Encrypt(plaintext, associatedData)
	r.err = err
	return ct, err
}

func (r *recordingKEK) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	r.called = true
	pt, err := r.kek.Decrypt(ciphertext, associatedData)
	r.err = err
	return pt, err
}

// describe names a KEK in error messages: its String method when it has one.
func describe(k kek.KEK) string {
	if s, ok := k.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("KEK %T", k)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes: %w", path, maxFileSize, ErrCorrupt)
	}
	return data, nil
}
