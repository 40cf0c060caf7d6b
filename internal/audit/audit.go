// Package audit writes one JSON line per request, allowed or denied, to an
// append-only file.
//
// Secret values never reach the file. A record carries a keyed HMAC-SHA256
// of each secret (a token, a password), so an auditor holding the key can
// match a known value to its records without the log revealing it. A failed write is returned to the
// caller, who must then fail the request (fail closed).
package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ErrUnavailable means the audit record could not be written.
var ErrUnavailable = errors.New("audit: log unavailable")

// Record is one audit line.
type Record struct {
	Time     time.Time         `json:"time"`
	Caller   string            `json:"caller"`
	Action   string            `json:"action"`
	Object   string            `json:"object"`
	Domain   string            `json:"domain,omitempty"`
	Decision string            `json:"decision"` // allow, deny, error
	Reason   string            `json:"reason,omitempty"`
	LeaseID  string            `json:"lease_id,omitempty"`
	Remote   string            `json:"remote,omitempty"`
	HMACs    map[string]string `json:"hmac,omitempty"` // name of the secret -> hex HMAC-SHA256 of its value
}

// appendFile is the part of *os.File a Log uses.
type appendFile interface {
	Write([]byte) (int, error)
	Truncate(size int64) error
	Sync() error
	Close() error
}

// Log appends records to a file. It is safe for concurrent use.
type Log struct {
	mu  sync.Mutex
	f   appendFile
	key []byte
	now func() time.Time
	// size is the file's length after the last whole record. The data
	// directory lock keeps other processes from writing the file.
	size int64
}

// Open opens (creating, mode 0600) the audit file at path for appending.
// key is the HMAC key for secret values.
func Open(path string, key []byte, now func() time.Time) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	return &Log{f: f, key: append([]byte(nil), key...), now: now, size: fi.Size()}, nil
}

// HMAC returns the hex HMAC-SHA256 of a secret value under the audit key.
func (l *Log) HMAC(secret []byte) string {
	mac := hmac.New(sha256.New, l.key)
	mac.Write(secret)
	return hex.EncodeToString(mac.Sum(nil))
}

// Write appends one record. Each record is one write(2) of one line to a file
// opened with O_APPEND, so lines from concurrent writers never interleave.
func (l *Log) Write(r Record) error {
	if r.Time.IsZero() {
		r.Time = l.now().UTC()
	}
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("%w: encode record: %v", ErrUnavailable, err)
	}
	line = append(line, '\n')

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return fmt.Errorf("%w: closed", ErrUnavailable)
	}
	n, err := l.f.Write(line)
	if err != nil {
		// A full disk can take part of the line. Cutting it off keeps the
		// next record on a line of its own, so both stay readable.
		if n > 0 {
			if terr := l.f.Truncate(l.size); terr != nil {
				return fmt.Errorf("%w: %v, and removing the partial record failed: %v", ErrUnavailable, err, terr)
			}
		}
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	l.size += int64(n)
	return nil
}

// Sync flushes the file to stable storage.
func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	return l.f.Sync()
}

// Close flushes and closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Sync()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}
