package lease

import (
	"context"
	"fmt"
	"iter"
	"sync"
)

// RevokeEach calls revoke for every item that items yields, with at most
// concurrency calls in flight, and calls done with each item's position
// and result. Calls to done do not overlap. Memory stays bounded by the
// concurrency whatever the length of the sequence, so a backend can stream
// thousands of leases from storage. When ctx ends, the remaining items are
// not pulled, and RevokeEach returns after the calls in flight.
func RevokeEach[T any](ctx context.Context, concurrency int, items iter.Seq[T], revoke func(context.Context, T) error, done func(n int, err error)) {
	sem := make(chan struct{}, max(1, concurrency))
	var (
		wg     sync.WaitGroup
		doneMu sync.Mutex
		n      int
	)
	for item := range items {
		if ctx.Err() != nil {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		i := n
		n++
		wg.Go(func() {
			defer func() { <-sem }()
			err := revoke(ctx, item)
			doneMu.Lock()
			defer doneMu.Unlock()
			done(i, err)
		})
	}
	wg.Wait()
}

// RevokeMany is RevokeEach over a slice. It returns one error (nil on
// success) per item, in order; items not attempted because ctx ended get
// an error saying so.
func RevokeMany[T any](ctx context.Context, concurrency int, items []T, revoke func(context.Context, T) error) []error {
	errs := make([]error, len(items))
	reported := make([]bool, len(items))
	seq := func(yield func(T) bool) {
		for _, item := range items {
			if !yield(item) {
				return
			}
		}
	}
	RevokeEach(ctx, concurrency, seq, revoke, func(n int, err error) {
		errs[n] = err
		reported[n] = true
	})
	for i := range errs {
		if !reported[i] {
			errs[i] = fmt.Errorf("revocation not attempted: %w", context.Cause(ctx))
		}
	}
	return errs
}
