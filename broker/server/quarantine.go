package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"ward.dev/ward/internal/store"
)

// maxReason bounds the free-text reason of a quarantine.
const maxReason = 500

type quarantineRequest struct {
	SPIFFEID string `json:"spiffe_id"`
	Reason   string `json:"reason,omitempty"`
}

// handleQuarantine cuts an identity off: the quarantine is stored durably,
// the policy overlay denies every request from or for it (so the mesh and
// the masking proxy follow), and its active leases are revoked.
func (s *Server) handleQuarantine(req *request) (any, *apiError) {
	var body quarantineRequest
	if err := decode(req.r, &body); err != nil {
		return nil, err
	}
	req.rec.Object = "quarantine/" + body.SPIFFEID
	id, msg := s.parseSPIFFEID(body.SPIFFEID)
	if id == nil {
		return nil, errorf(http.StatusBadRequest, "%s", msg)
	}
	if body.Reason == "" || len(body.Reason) > maxReason {
		return nil, errorf(http.StatusBadRequest, "reason is required, at most %d characters", maxReason)
	}
	if id.String() == s.adminID {
		return nil, errorf(http.StatusBadRequest, "the admin identity cannot be quarantined")
	}
	if err := s.require(req, "quarantine/"+id.String(), "quarantine"); err != nil {
		return nil, err
	}

	start := time.Now()
	q := store.Quarantine{SPIFFEID: id.String(), Reason: body.Reason, CreatedBy: req.caller.id, CreatedAt: s.now()}
	if err := s.store.PutQuarantine(req.r.Context(), q); err != nil {
		return nil, unavailable("store unavailable, quarantine not recorded", err)
	}
	s.authz.Quarantine(q.SPIFFEID, q.Reason)
	if _, err := s.store.DeleteJoinTokens(req.r.Context(), q.SPIFFEID); err != nil {
		return nil, unavailable("store unavailable, join tokens of the identity not voided", err)
	}

	// Revocation continues after the client leaves: a half-revoked identity
	// is worse than a slow response.
	n, err := s.leases.RevokeSubject(context.WithoutCancel(req.r.Context()), q.SPIFFEID)
	if err != nil {
		return nil, &apiError{status: http.StatusServiceUnavailable, cause: err,
			msg: "quarantined, and revoked " + strconv.Itoa(n) + " leases, but a backend failed; the sweeper retries the rest"}
	}
	resp := map[string]any{"spiffe_id": q.SPIFFEID, "revoked_leases": n, "quarantined_at": q.CreatedAt}
	if s.pgproxy != nil {
		resp["proxy_sessions_ended"] = s.pgproxy.EndSessions("", q.SPIFFEID)
	}
	if s.mesh != nil {
		resp["mesh"] = s.meshQuarantine(req.r.Context(), q.SPIFFEID, true)
	}
	s.log.Info("identity quarantined", "spiffe_id", q.SPIFFEID, "revoked_leases", n, "duration", time.Since(start))
	return resp, nil
}

func (s *Server) handleRelease(req *request) (any, *apiError) {
	var body quarantineRequest
	if err := decode(req.r, &body); err != nil {
		return nil, err
	}
	req.rec.Object = "quarantine/" + body.SPIFFEID
	id, msg := s.parseSPIFFEID(body.SPIFFEID)
	if id == nil {
		return nil, errorf(http.StatusBadRequest, "%s", msg)
	}
	if err := s.require(req, "quarantine/"+id.String(), "release"); err != nil {
		return nil, err
	}
	err := s.store.DeleteQuarantine(req.r.Context(), id.String())
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(http.StatusNotFound, "%s is not quarantined", id)
	}
	if err != nil {
		return nil, unavailable("store unavailable, quarantine not lifted", err)
	}
	s.authz.Release(id.String())
	resp := map[string]any{"spiffe_id": id.String(), "released": true}
	if s.mesh != nil {
		resp["mesh"] = s.meshQuarantine(req.r.Context(), id.String(), false)
	}
	return resp, nil
}

func (s *Server) handleListQuarantine(req *request) (any, *apiError) {
	req.rec.Object = "quarantine/*"
	if err := s.require(req, "quarantine/*", "read"); err != nil {
		return nil, err
	}
	qs, err := s.store.Quarantines(req.r.Context())
	if err != nil {
		return nil, unavailable("store unavailable", err)
	}
	if qs == nil {
		qs = []store.Quarantine{}
	}
	return map[string]any{"quarantined": qs}, nil
}

// loadQuarantines restores the overlay from the store at start.
func (s *Server) loadQuarantines(ctx context.Context) error {
	qs, err := s.store.Quarantines(ctx)
	if err != nil {
		return err
	}
	for _, q := range qs {
		s.authz.Quarantine(q.SPIFFEID, q.Reason)
	}
	return nil
}

// meshQuarantine pushes a quarantine change to the mesh and reports the time
// from the call to the last affected node's ACK.
func (s *Server) meshQuarantine(ctx context.Context, id string, on bool) map[string]any {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), meshConvergeWait)
	defer cancel()
	var (
		took time.Duration
		err  error
	)
	if on {
		took, err = s.mesh.Quarantine(ctx, id)
	} else {
		took, err = s.mesh.Release(ctx, id)
	}
	out := map[string]any{"converged_ms": took.Milliseconds()}
	if err != nil {
		s.log.Warn("mesh did not converge on the quarantine change", "spiffe_id", id, "error", err)
		out["error"] = err.Error()
	}
	return out
}
