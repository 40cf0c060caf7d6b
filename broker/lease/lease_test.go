package lease_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"ward.dev/ward/broker/lease"
	"ward.dev/ward/internal/store"
)

// clock is a settable test clock, safe for concurrent use.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// recorder is a Revoker that records calls and fails while failing is set.
type recorder struct {
	mu      sync.Mutex
	revoked []string
	failing bool
}

func (r *recorder) Revoke(_ context.Context, l store.Lease) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing {
		return errors.New("backend unreachable")
	}
	r.revoked = append(r.revoked, l.ID)
	return nil
}

func newManager(t *testing.T) (*lease.Manager, *clock, *recorder) {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "ward.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := lease.New(s, slog.New(slog.NewTextHandler(io.Discard, nil)), clk.Now)
	rec := &recorder{}
	m.Register("db", rec, nil)
	return m, clk, rec
}

func create(t *testing.T, m *lease.Manager, clk *clock, id string, ttl, max time.Duration) {
	t.Helper()
	now := clk.Now()
	err := m.Create(context.Background(), store.Lease{
		ID: id, Kind: "db", Object: "db/shop", Subject: "spiffe://ward.test/a",
		IssuedAt: now, ExpiresAt: now.Add(ttl), MaxExpiresAt: now.Add(max), Renewable: true,
	})
	if err != nil {
		t.Fatalf("Create(%s) = %v", id, err)
	}
}

func TestRenewStopsAtMaxTTL(t *testing.T) {
	m, clk, _ := newManager(t)
	ctx := context.Background()
	create(t, m, clk, "db/shop/1", time.Minute, 3*time.Minute)

	l, err := m.Renew(ctx, "db/shop/1", 10*time.Minute)
	if err != nil {
		t.Fatalf("Renew = %v", err)
	}
	if want := clk.Now().Add(3 * time.Minute); !l.ExpiresAt.Equal(want) {
		t.Errorf("Renew expiry = %s, want the maximum %s", l.ExpiresAt, want)
	}
	if _, err := m.Renew(ctx, "db/shop/1", time.Minute); !errors.Is(err, lease.ErrMaxTTL) {
		t.Errorf("second Renew = %v, want ErrMaxTTL", err)
	}
}

func TestRenewExpiredLease(t *testing.T) {
	m, clk, _ := newManager(t)
	create(t, m, clk, "db/shop/1", time.Minute, time.Hour)
	clk.Advance(2 * time.Minute)
	if _, err := m.Renew(context.Background(), "db/shop/1", time.Minute); !errors.Is(err, lease.ErrLeaseExpired) {
		t.Errorf("Renew after expiry = %v, want ErrLeaseExpired", err)
	}
}

func TestSweepExpiresDueLeasesOnly(t *testing.T) {
	m, clk, rec := newManager(t)
	ctx := context.Background()
	create(t, m, clk, "db/shop/short", time.Minute, time.Minute)
	create(t, m, clk, "db/shop/long", time.Hour, time.Hour)
	clk.Advance(2 * time.Minute)

	n, err := m.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v, want 1, nil", n, err)
	}
	if len(rec.revoked) != 1 || rec.revoked[0] != "db/shop/short" {
		t.Errorf("revoker calls = %v, want [db/shop/short]", rec.revoked)
	}
	l, _ := m.Get(ctx, "db/shop/long")
	if l.State != store.StateActive {
		t.Errorf("long lease state = %s, want active", l.State)
	}
}

func TestFailedRevocationKeepsLeaseActive(t *testing.T) {
	m, clk, rec := newManager(t)
	ctx := context.Background()
	create(t, m, clk, "db/shop/1", time.Hour, time.Hour)
	rec.failing = true

	if _, err := m.Revoke(ctx, "db/shop/1"); err == nil {
		t.Fatal("Revoke with failing backend = nil, want an error")
	}
	l, _ := m.Get(ctx, "db/shop/1")
	if l.State != store.StateActive {
		t.Fatalf("state after failed revoke = %s, want active", l.State)
	}

	rec.failing = false
	if _, err := m.Revoke(ctx, "db/shop/1"); err != nil {
		t.Fatalf("Revoke after recovery = %v", err)
	}
	l, _ = m.Get(ctx, "db/shop/1")
	if l.State != store.StateRevoked {
		t.Errorf("state = %s, want revoked", l.State)
	}
}

func TestRevokePrefixManyLeases(t *testing.T) {
	m, clk, rec := newManager(t)
	const count = 1200 // more than one page
	var wg sync.WaitGroup
	for i := range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			create(t, m, clk, "db/shop/"+string(rune('a'+i%26))+time.Duration(i).String(), time.Hour, time.Hour)
		}()
	}
	wg.Wait()
	create(t, m, clk, "db/other/1", time.Hour, time.Hour)

	n, err := m.RevokePrefix(context.Background(), "db/shop", nil)
	if err != nil || n != count {
		t.Fatalf("RevokePrefix = %d, %v, want %d, nil", n, err, count)
	}
	if len(rec.revoked) != count {
		t.Errorf("revoker calls = %d, want %d", len(rec.revoked), count)
	}
	other, _ := m.Get(context.Background(), "db/other/1")
	if other.State != store.StateActive {
		t.Errorf("lease outside the prefix is %s, want active", other.State)
	}
}
