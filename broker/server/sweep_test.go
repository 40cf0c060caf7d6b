package server

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"ward.dev/ward/broker/pgcred"
	"ward.dev/ward/internal/store"
)

// TestSweepExpiredLeasesWhoseRolesAreGone loads 5,000 expired database
// leases whose logins no longer exist, as after a long outage in which an
// operator dropped them by hand, and checks that the sweeper ends them all
// while the API keeps responding.
func TestSweepExpiredLeasesWhoseRolesAreGone(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 5,000 leases")
	}
	ts, _ := startWithDatabase(t)
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	const count = 5000

	var wg sync.WaitGroup
	errs := make(chan error, count)
	for i := range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- ts.srv.store.InsertLease(ctx, store.Lease{
				ID: fmt.Sprintf("db/shop-readonly/gone%05d", i), Kind: "db", Object: "db/shop-readonly",
				Subject: "spiffe://ward.test/a", IssuedAt: past, ExpiresAt: past, MaxExpiresAt: past, Renewable: true,
				Meta: map[string]string{pgcred.MetaRole: "shop-readonly", pgcred.MetaUsername: fmt.Sprintf("ward_shop_readonly_gone%05d", i)},
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	deadline := start.Add(60 * time.Second)
	for {
		// The API responds throughout.
		if code := ts.call(t, "GET", "/v1/health", nil, nil); code != http.StatusOK {
			t.Fatalf("health during the sweep = %d, want 200", code)
		}
		counts, err := ts.srv.store.CountLeases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if counts[store.StateActive] == 0 {
			t.Logf("swept %d leases in %s", count, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d leases still active after 60s", counts[store.StateActive])
		}
		time.Sleep(250 * time.Millisecond)
	}
}
