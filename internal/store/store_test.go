package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ward.dev/ward/internal/store"
)

func openStore(t *testing.T) (*store.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ward.db")
	s, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

func TestConcurrentInsertsSurviveReopen(t *testing.T) {
	s, path := openStore(t)
	ctx := context.Background()
	now := time.Now()
	const n = 300
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.InsertLease(ctx, store.Lease{ID: fmt.Sprintf("x509/a/%03d", i), Kind: "x509", Object: "x509/a",
				Subject: "a", IssuedAt: now, ExpiresAt: now.Add(time.Hour), MaxExpiresAt: now.Add(time.Hour)})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	s.Close()

	s2, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	leases, err := s2.ListLeases(ctx, store.LeaseFilter{Prefix: "x509/a/", Limit: 1000})
	if err != nil || len(leases) != n {
		t.Fatalf("ListLeases after reopen = %d, %v, want %d", len(leases), err, n)
	}
}

func TestJoinTokenUsedExactlyOnce(t *testing.T) {
	s, _ := openStore(t)
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	digest := store.TokenDigest([]byte("token"))
	if err := s.InsertJoinToken(ctx, digest, store.JoinToken{SPIFFEID: "spiffe://ward.test/a", CreatedBy: "admin", CreatedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}

	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.ConsumeJoinToken(ctx, digest, now)
			switch {
			case err == nil:
				wins.Add(1)
			case !errors.Is(err, store.ErrTokenInvalid):
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("concurrent uses that succeeded = %d, want 1", wins.Load())
	}
}

func TestJoinTokenExpired(t *testing.T) {
	s, _ := openStore(t)
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	digest := store.TokenDigest([]byte("t"))
	s.InsertJoinToken(ctx, digest, store.JoinToken{SPIFFEID: "a", CreatedBy: "b", CreatedAt: now, ExpiresAt: now.Add(time.Second)})
	if _, err := s.ConsumeJoinToken(ctx, digest, now.Add(2*time.Second)); !errors.Is(err, store.ErrTokenInvalid) {
		t.Errorf("ConsumeJoinToken after expiry = %v, want ErrTokenInvalid", err)
	}
}

func TestListLeasesPrefixIsLiteral(t *testing.T) {
	s, _ := openStore(t)
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	for _, id := range []string{"db/a_b/1", "db/axb/1", "db/a%/1"} {
		if err := s.InsertLease(ctx, store.Lease{ID: id, Kind: "db", Object: "db", Subject: "s", IssuedAt: now, ExpiresAt: now, MaxExpiresAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	// A LIKE-based filter would let _ and % match other ids.
	for prefix, want := range map[string]int{"db/a_b/": 1, "db/a%": 1, "db/a": 3} {
		leases, _ := s.ListLeases(ctx, store.LeaseFilter{Prefix: prefix})
		if len(leases) != want {
			t.Errorf("ListLeases(prefix %q) = %d leases, want %d", prefix, len(leases), want)
		}
	}
}
