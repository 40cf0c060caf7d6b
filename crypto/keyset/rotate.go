package keyset

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	tinkkeyset "github.com/tink-crypto/tink-go/v2/keyset"

	"ward.dev/ward/crypto/kek"
)

// ErrChanged reports that another process rewrote the keyset file after this
// Keyset read it. Open the keyset again and retry.
var ErrChanged = errors.New("keyset: file changed on disk since it was opened")

// Policy decides when the primary key is due for rotation. A zero field
// disables that limit.
type Policy struct {
	// MaxAge is the maximum age of the primary key.
	MaxAge time.Duration
	// MaxEncryptions is the maximum number of encryptions with the primary key.
	MaxEncryptions uint64
}

// DefaultPolicy rotates the primary key after 90 days or 2^30 encryptions.
// NIST SP 800-57 Part 1 Rev. 5 suggests a cryptoperiod of up to two years for
// a symmetric data-encryption key, and NIST SP 800-38D allows at most 2^32
// encryptions under one key with random 96-bit IVs. Both defaults stay far
// inside those limits, and the count leaves room for the block of up to 2^16
// encryptions each process claims ahead.
var DefaultPolicy = Policy{MaxAge: 90 * 24 * time.Hour, MaxEncryptions: 1 << 30}

// KeyStatus describes one key of a keyset. It contains no key material.
type KeyStatus struct {
	ID      uint32    `json:"id"`
	Primary bool      `json:"primary"`
	Status  string    `json:"status"` // "Enabled", "Disabled" or "Destroyed" as Tink names them
	Created time.Time `json:"created"`
	Age     Duration  `json:"age"`
	// Encryptions is an upper bound on the encryptions made with the key:
	// it includes blocks that running processes claimed but may not use.
	Encryptions uint64 `json:"encryptions"`
	// Estimated marks a creation time taken from the keyset file's
	// modification time, because the usage file had no entry for the key.
	Estimated bool `json:"estimated,omitempty"`
}

// Duration is a time.Duration that marshals to JSON as a string like "72h0m0s".
type Duration time.Duration

// MarshalText returns the duration in time.Duration's String format.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Status describes a keyset: its file, its KEK and its keys in file order.
type Status struct {
	Path string      `json:"path"`
	KEK  string      `json:"kek"`
	Keys []KeyStatus `json:"keys"`
}

// Status returns the keys of the keyset with their ages and use counts.
func (ks *Keyset) Status() Status {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	ks.usageMu.Lock()
	defer ks.usageMu.Unlock()

	now := ks.now()
	st := Status{Path: ks.path, KEK: describe(ks.kek)}
	for i := range ks.handle.Len() {
		entry, err := ks.handle.Entry(i)
		if err != nil {
			continue
		}
		u := ks.usage[entry.KeyID()]
		count := u.Encryptions
		if entry.KeyID() == ks.primaryID {
			count = max(count, ks.ceiling)
		}
		st.Keys = append(st.Keys, KeyStatus{
			ID:          entry.KeyID(),
			Primary:     entry.IsPrimary(),
			Status:      entry.KeyStatus().String(),
			Created:     u.Created,
			Age:         Duration(now.Sub(u.Created).Round(time.Second)),
			Encryptions: count,
			Estimated:   u.Estimated,
		})
	}
	return st
}

// RotationDue reports whether the primary key has reached a limit of p, and
// which one.
func (ks *Keyset) RotationDue(p Policy) (due bool, reason string) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	ks.usageMu.Lock()
	defer ks.usageMu.Unlock()

	u := ks.usage[ks.primaryID]
	age := ks.now().Sub(u.Created)
	count := max(u.Encryptions, ks.ceiling)
	switch {
	case p.MaxAge > 0 && age >= p.MaxAge:
		return true, fmt.Sprintf("primary key %d is %s old, limit %s", ks.primaryID, age.Round(time.Second), p.MaxAge)
	case p.MaxEncryptions > 0 && count >= p.MaxEncryptions:
		return true, fmt.Sprintf("primary key %d has up to %d encryptions, limit %d", ks.primaryID, count, p.MaxEncryptions)
	}
	return false, ""
}

// RotateIfDue rotates the keyset when RotationDue(p) reports a limit reached.
func (ks *Keyset) RotateIfDue(p Policy) (rotated bool, err error) {
	if due, _ := ks.RotationDue(p); !due {
		return false, nil
	}
	if _, err := ks.Rotate(); err != nil {
		return false, err
	}
	return true, nil
}

// Rotate adds a new AES-256-GCM key, makes it the primary key and reseals
// the keyset atomically. Older keys stay enabled, so their ciphertexts stay
// readable. Rotate returns the id of the new key, or ErrChanged when another
// process rewrote the file since this Keyset read it.
func (ks *Keyset) Rotate() (uint32, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()

	manager := tinkkeyset.NewManagerFromHandle(ks.handle)
	id, err := manager.Add(aead.AES256GCMKeyTemplate())
	if err != nil {
		return 0, fmt.Errorf("keyset.Rotate: generating key: %v", err)
	}
	if err := manager.SetPrimary(id); err != nil {
		return 0, fmt.Errorf("keyset.Rotate: %v", err)
	}
	handle, err := manager.Handle()
	if err != nil {
		return 0, fmt.Errorf("keyset.Rotate: %v", err)
	}
	if err := ks.replace(handle, ks.kek, id); err != nil {
		return 0, fmt.Errorf("keyset.Rotate: %w", err)
	}
	return id, nil
}

// Rewrap reseals the keyset under to and replaces the file atomically. The
// keys do not change. From then on the keyset opens only with to.
func (ks *Keyset) Rewrap(to kek.KEK) error {
	if to == nil {
		return errors.New("keyset.Rewrap: nil KEK")
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()

	if err := ks.replace(ks.handle, to, 0); err != nil {
		return fmt.Errorf("keyset.Rewrap: %w", err)
	}
	return nil
}

// replace seals handle with k, writes it over the keyset file and makes it
// current. newKeyID, when not zero, is a key added by rotation. The caller
// holds mu for writing.
func (ks *Keyset) replace(handle *tinkkeyset.Handle, k kek.KEK, newKeyID uint32) error {
	primitive, primaryID, err := primitiveFor(handle)
	if err != nil {
		return err
	}
	sealed, err := seal(handle, k, ks.path)
	if err != nil {
		return err
	}

	unlock, err := lockFile(ks.path)
	if err != nil {
		return err
	}
	defer unlock()

	current, err := readFile(ks.path)
	if err != nil {
		return err
	}
	if sum := sha256.Sum256(current); !bytes.Equal(sum[:], ks.digest[:]) {
		return fmt.Errorf("%s: %w", ks.path, ErrChanged)
	}

	ks.usageMu.Lock()
	defer ks.usageMu.Unlock()

	// The usage file is written first: an entry for a key that never reached
	// the keyset file is harmless.
	disk, err := readUsage(ks.path)
	if err != nil {
		return err
	}
	mem := maps.Clone(ks.usage)
	if newKeyID != 0 {
		mem[newKeyID] = usageEntry{ID: newKeyID, Created: ks.now().UTC()}
	}
	merged := mergeUsage(disk, mem)
	ids := make([]uint32, 0, handle.Len())
	for i := range handle.Len() {
		if entry, err := handle.Entry(i); err == nil {
			ids = append(ids, entry.KeyID())
		}
	}
	if err := writeUsage(ks.path, merged, ids); err != nil {
		return fmt.Errorf("recording key usage: %w", err)
	}
	if err := writeFile(ks.path, sealed, true); err != nil {
		return err
	}

	ks.handle = handle
	ks.aead = primitive
	ks.kek = k
	ks.digest = sha256.Sum256(sealed)
	ks.usage = merged
	if primaryID != ks.primaryID {
		ks.primaryID = primaryID
		ks.next = merged[primaryID].Encryptions
		ks.ceiling = ks.next
	}
	return nil
}

// AutoRotate applies p at every value received from tick and rotates when a
// limit is reached, until ctx ends or tick is closed. After each rotation or
// failed attempt it calls report, which may be nil, with the new key id or
// the error. ErrChanged means another process rotated or rewrapped the file,
// so the caller should open the keyset again. Run AutoRotate in its own
// goroutine, with a ticker such as time.NewTicker(time.Hour).C.
func (ks *Keyset) AutoRotate(ctx context.Context, p Policy, tick <-chan time.Time, report func(newKeyID uint32, err error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-tick:
			if !ok {
				return
			}
		}

		if due, _ := ks.RotationDue(p); !due {
			continue
		}
		id, err := ks.Rotate()
		if report != nil {
			report(id, err)
		}
	}
}
