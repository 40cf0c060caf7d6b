// Package lease manages the lifetime of issued credentials: creation (durable
// before the credential is returned), renewal up to a maximum TTL, revocation
// of one lease or a prefix, and the expiry sweeper.
//
// When a lease ends, the Revoker registered for its kind undoes the
// credential at its backend (drops a database login, revokes a Vault lease).
// A Revoker that fails leaves the lease active, so the sweeper retries it:
// nothing is marked revoked that may still work.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"ward.dev/ward/internal/store"
)

// Sentinel errors that callers branch on.
var (
	ErrNotFound     = errors.New("lease not found or no longer active")
	ErrNotRenewable = errors.New("lease is not renewable")
	ErrLeaseExpired = errors.New("lease has expired")
	ErrMaxTTL       = errors.New("lease has reached its maximum TTL")
	// ErrGone is returned by a Renewer whose credential no longer exists at
	// its backend; the manager then records the lease as revoked.
	ErrGone = errors.New("credential no longer exists at its backend")
)

// Revoker undoes a credential at its backend when its lease ends. Revoke
// returns nil when the credential is already gone.
type Revoker interface {
	Revoke(ctx context.Context, l store.Lease) error
}

// Renewer extends a credential at its backend to a new expiry.
type Renewer interface {
	Renew(ctx context.Context, l store.Lease, expiresAt time.Time) error
}

// Manager is safe for concurrent use.
type Manager struct {
	store    *store.Store
	log      *slog.Logger
	now      func() time.Time
	revokers map[string]Revoker
	renewers map[string]Renewer
	onEnd    []func(store.Lease, string)

	// retryMu guards retry: when each lease whose revocation failed may be
	// tried again, so a backend that is down is not asked every second.
	retryMu sync.Mutex
	retry   map[string]retryState

	// sweepWorkers bounds how many revocations run at once.
	sweepWorkers int
}

// New returns a Manager over s.
func New(s *store.Store, log *slog.Logger, now func() time.Time) *Manager {
	return &Manager{
		store:        s,
		log:          log,
		now:          now,
		revokers:     map[string]Revoker{},
		retry:        map[string]retryState{},
		renewers:     map[string]Renewer{},
		sweepWorkers: 8,
	}
}

// Register sets the backend actions for leases of kind. Either may be nil.
// Call it before the manager is used.
func (m *Manager) Register(kind string, rv Revoker, rn Renewer) {
	if rv != nil {
		m.revokers[kind] = rv
	}
	if rn != nil {
		m.renewers[kind] = rn
	}
}

// OnEnd adds a function called after a lease is revoked or expires, with the
// lease and its new state. Call it before the manager is used.
func (m *Manager) OnEnd(f func(store.Lease, string)) { m.onEnd = append(m.onEnd, f) }

// Create stores a new active lease and returns once it is durable.
func (m *Manager) Create(ctx context.Context, l store.Lease) error {
	return m.store.InsertLease(ctx, l)
}

// Get returns one lease.
func (m *Manager) Get(ctx context.Context, id string) (store.Lease, error) {
	l, err := m.store.GetLease(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Lease{}, ErrNotFound
	}
	return l, err
}

// List returns the leases matching f.
func (m *Manager) List(ctx context.Context, f store.LeaseFilter) ([]store.Lease, error) {
	return m.store.ListLeases(ctx, f)
}

// Renew extends an active lease by increment, never past its maximum expiry.
func (m *Manager) Renew(ctx context.Context, id string, increment time.Duration) (store.Lease, error) {
	l, err := m.Get(ctx, id)
	if err != nil {
		return store.Lease{}, err
	}
	now := m.now()
	switch {
	case l.State != store.StateActive:
		return store.Lease{}, ErrNotFound
	case !l.Renewable:
		return store.Lease{}, ErrNotRenewable
	case !l.ExpiresAt.After(now):
		return store.Lease{}, ErrLeaseExpired
	case !l.ExpiresAt.Before(l.MaxExpiresAt.Add(-maxTTLSlack)):
		return store.Lease{}, ErrMaxTTL
	}

	// A renewal that cannot move the expiry later (the maximum is reached,
	// within a second of backend clock differences) is reported as such
	// rather than applied: it would only shorten or keep the lease.
	expires := now.Add(increment)
	if expires.After(l.MaxExpiresAt) {
		expires = l.MaxExpiresAt
	}
	if !expires.After(l.ExpiresAt.Add(maxTTLSlack)) && expires.Equal(l.MaxExpiresAt) {
		return store.Lease{}, ErrMaxTTL
	}
	if rn, ok := m.renewers[l.Kind]; ok {
		if err := rn.Renew(ctx, l, expires); errors.Is(err, ErrGone) {
			if endErr := m.store.EndLease(ctx, l.ID, store.StateRevoked, now); endErr == nil {
				for _, f := range m.onEnd {
					f(l, store.StateRevoked)
				}
			}
			return store.Lease{}, err
		} else if err != nil {
			return store.Lease{}, fmt.Errorf("renew %s at its backend: %w", l.ID, err)
		}
	}
	if err := m.store.ExtendLease(ctx, id, expires); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return store.Lease{}, ErrNotFound
		}
		return store.Lease{}, err
	}
	l.ExpiresAt = expires
	return l, nil
}

// Revoke ends one active lease and undoes its credential.
func (m *Manager) Revoke(ctx context.Context, id string) (store.Lease, error) {
	l, err := m.Get(ctx, id)
	if err != nil {
		return store.Lease{}, err
	}
	if l.State != store.StateActive {
		return store.Lease{}, ErrNotFound
	}
	return l, m.end(ctx, l, store.StateRevoked)
}

// RevokePrefix revokes every active lease under prefix for which allow
// returns true (nil allows all), with bounded concurrency, and returns how
// many it revoked. The prefix ends at a path segment: "db/shop" covers
// db/shop/... but not db/shop-admin/.... It continues past failures and
// returns the first error.
func (m *Manager) RevokePrefix(ctx context.Context, prefix string, allow func(store.Lease) bool) (int, error) {
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return m.endAll(ctx, store.StateRevoked, func(limit int) ([]store.Lease, error) {
		leases, err := m.store.ListLeases(ctx, store.LeaseFilter{Prefix: prefix, State: store.StateActive, Limit: limit})
		if err != nil || allow == nil {
			return leases, err
		}
		kept := leases[:0]
		for _, l := range leases {
			if allow(l) {
				kept = append(kept, l)
			}
		}
		return kept, nil
	})
}

// RevokeSubject revokes every active lease issued to subject, as when the
// identity is quarantined, and returns how many it revoked.
func (m *Manager) RevokeSubject(ctx context.Context, subject string) (int, error) {
	return m.endAll(ctx, store.StateRevoked, func(limit int) ([]store.Lease, error) {
		return m.store.ListLeases(ctx, store.LeaseFilter{Subject: subject, State: store.StateActive, Limit: limit})
	})
}

// Sweep expires every active lease whose expiry has passed and returns how
// many it ended. A lease whose revocation failed is retried with backoff.
func (m *Manager) Sweep(ctx context.Context) (int, error) {
	return m.endAll(ctx, store.StateExpired, func(limit int) ([]store.Lease, error) {
		leases, err := m.store.DueLeases(ctx, m.now(), limit)
		if err != nil {
			return nil, err
		}
		now := m.now()
		due := leases[:0]
		m.retryMu.Lock()
		for _, l := range leases {
			if r, ok := m.retry[l.ID]; !ok || !now.Before(r.next) {
				due = append(due, l)
			}
		}
		m.retryMu.Unlock()
		return due, nil
	})
}

type retryState struct {
	failures int
	next     time.Time
}

// maxRetryDelay caps the backoff between revocation attempts of one lease.
const maxRetryDelay = 5 * time.Minute

func (m *Manager) noteFailure(id string) (failures int) {
	m.retryMu.Lock()
	defer m.retryMu.Unlock()
	r := m.retry[id]
	r.failures++
	delay := time.Second << min(r.failures-1, 9)
	r.next = m.now().Add(min(delay, maxRetryDelay))
	m.retry[id] = r
	return r.failures
}

func (m *Manager) noteSuccess(id string) {
	m.retryMu.Lock()
	delete(m.retry, id)
	m.retryMu.Unlock()
}

// RunSweeper calls Sweep every interval until ctx ends.
func (m *Manager) RunSweeper(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		n, err := m.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			m.log.Warn("lease sweep incomplete", "expired", n, "error", err)
		} else if n > 0 {
			m.log.Info("leases expired", "count", n)
		}
	}
}

// maxTTLSlack absorbs the difference between ward's and a backend's record
// of a lease's maximum expiry, which are taken moments apart.
const maxTTLSlack = time.Second

// pageSize bounds how many leases one pass holds in memory.
const pageSize = 500

// endAll ends leases page by page until a page makes no progress.
func (m *Manager) endAll(ctx context.Context, state string, page func(limit int) ([]store.Lease, error)) (int, error) {
	total := 0
	var firstErr error
	for {
		leases, err := page(pageSize)
		if err != nil {
			return total, err
		}
		if len(leases) == 0 {
			return total, firstErr
		}

		ended, err := m.endConcurrently(ctx, leases, state)
		total += ended
		if err != nil && firstErr == nil {
			firstErr = err
		}
		// A page in which nothing could be ended would come back unchanged.
		if ended == 0 || ctx.Err() != nil {
			if firstErr == nil {
				firstErr = ctx.Err()
			}
			return total, firstErr
		}
	}
}

func (m *Manager) endConcurrently(ctx context.Context, leases []store.Lease, state string) (int, error) {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ended    int
		firstErr error
		slots    = make(chan struct{}, m.sweepWorkers)
	)
	for _, l := range leases {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			err := m.end(ctx, l, state)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ended++
			} else if firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	return ended, firstErr
}

// end runs the kind's Revoker, then records the new state.
func (m *Manager) end(ctx context.Context, l store.Lease, state string) error {
	if rv, ok := m.revokers[l.Kind]; ok {
		if err := rv.Revoke(ctx, l); err != nil {
			// Log the first failure and then every tenth, with the count.
			if n := m.noteFailure(l.ID); n == 1 || n%10 == 0 {
				m.log.Warn("lease revocation failed, will retry with backoff", "lease_id", l.ID, "kind", l.Kind, "attempts", n, "error", err)
			}
			return fmt.Errorf("revoke %s at its backend: %w", l.ID, err)
		}
		m.noteSuccess(l.ID)
	}
	if err := m.store.EndLease(ctx, l.ID, state, m.now()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil // ended concurrently by another caller
		}
		return err
	}
	for _, f := range m.onEnd {
		f(l, state)
	}
	return nil
}
