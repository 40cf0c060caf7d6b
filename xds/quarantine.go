package xds

import (
	"context"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Quarantine isolates a SPIFFE ID: every listener in the mesh stops
// admitting it and its own listeners admit nobody. It rebuilds at once,
// bypassing the debounce, then waits until every connected node has
// acknowledged (or rejected) the new configuration, and returns the time
// from the call to that last acknowledgement. If ctx ends first, the
// quarantine stays in force and the error names the nodes still pending.
//
// The quarantine lives in this server's memory. The durable record belongs
// in the policy, where the broker also sees it.
func (s *Server) Quarantine(ctx context.Context, spiffeID string) (time.Duration, error) {
	return s.setQuarantine(ctx, spiffeID, true)
}

// Release lifts a quarantine, with the same rebuild and wait as Quarantine.
func (s *Server) Release(ctx context.Context, spiffeID string) (time.Duration, error) {
	return s.setQuarantine(ctx, spiffeID, false)
}

func (s *Server) setQuarantine(ctx context.Context, spiffeID string, on bool) (time.Duration, error) {
	start := time.Now()
	if _, err := spiffeid.FromString(spiffeID); err != nil {
		return 0, fmt.Errorf("xds: quarantine %q: %w", spiffeID, err)
	}

	s.mu.Lock()
	if on {
		s.quarantined[spiffeID] = true
	} else {
		delete(s.quarantined, spiffeID)
	}
	s.mu.Unlock()
	s.log.Info("xds quarantine changed", "spiffe_id", spiffeID, "quarantined", on)

	// A failed build keeps the old configuration, which for a quarantine
	// means the ID is still admitted: report it as an error.
	if err := s.Rebuild(ctx); err != nil {
		return time.Since(start), fmt.Errorf("xds: quarantine %q not pushed: %w", spiffeID, err)
	}
	if _, err := s.WaitConverged(ctx); err != nil {
		return time.Since(start), err
	}
	return time.Since(start), nil
}
