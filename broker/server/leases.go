package server

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"ward.dev/ward/broker/lease"
	"ward.dev/ward/internal/store"
)

func (s *Server) handleListLeases(req *request) (any, *apiError) {
	q := req.r.URL.Query()
	f := store.LeaseFilter{Prefix: q.Get("prefix"), State: q.Get("state")}
	switch f.State {
	case "", store.StateActive, store.StateRevoked, store.StateExpired:
	default:
		return nil, errorf(http.StatusBadRequest, "invalid state %s, want active, revoked or expired", quote(f.State))
	}
	if raw := q.Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > 10000 {
			return nil, errorf(http.StatusBadRequest, "invalid limit %s, want 1 to 10000", quote(raw))
		}
		f.Limit = n
	}

	// A caller always sees its own leases; listing everyone's needs read on lease/*.
	req.rec.Object = "lease/" + f.Prefix
	if !s.decide(req.caller.id, "lease/*", "read").Allowed {
		f.Subject = req.caller.id
	}
	leases, err := s.leases.List(req.r.Context(), f)
	if err != nil {
		return nil, unavailable("lease store unavailable", err)
	}
	if leases == nil {
		leases = []store.Lease{}
	}
	return map[string]any{"leases": leases}, nil
}

type renewRequest struct {
	LeaseID   string `json:"lease_id"`
	Increment string `json:"increment,omitempty"`
}

func (s *Server) handleRenew(req *request) (any, *apiError) {
	var body renewRequest
	if err := decode(req.r, &body); err != nil {
		return nil, err
	}
	if body.LeaseID == "" {
		return nil, errorf(http.StatusBadRequest, "missing lease_id")
	}
	req.rec.LeaseID = body.LeaseID
	increment, aerr := parseTTL(body.Increment, s.cfg.TTL.Default.Duration, s.cfg.TTL.Max.Duration)
	if aerr != nil {
		return nil, aerr
	}

	l, aerr := s.leaseFor(req, body.LeaseID, "renew")
	if aerr != nil {
		return nil, aerr
	}
	renewed, err := s.leases.Renew(req.r.Context(), l.ID, increment)
	if errors.Is(err, lease.ErrMaxTTL) && strings.HasPrefix(l.Object, "db/") && l.Subject == req.caller.id {
		return s.rotateDBLease(req, l)
	}
	if err != nil {
		return nil, leaseError(body.LeaseID, err)
	}
	return renewed, nil
}

type revokeRequest struct {
	LeaseID string `json:"lease_id,omitempty"`
	Prefix  string `json:"prefix,omitempty"`
}

func (s *Server) handleRevoke(req *request) (any, *apiError) {
	var body revokeRequest
	if err := decode(req.r, &body); err != nil {
		return nil, err
	}
	switch {
	case body.LeaseID != "" && body.Prefix != "":
		return nil, errorf(http.StatusBadRequest, "send lease_id or prefix, not both")
	case body.LeaseID != "":
		req.rec.LeaseID = body.LeaseID
		l, aerr := s.leaseFor(req, body.LeaseID, "revoke")
		if aerr != nil {
			return nil, aerr
		}
		if _, err := s.leases.Revoke(req.r.Context(), l.ID); err != nil {
			return nil, leaseError(body.LeaseID, err)
		}
		return map[string]any{"revoked": 1}, nil
	case body.Prefix != "":
		prefix := strings.TrimSuffix(body.Prefix, "/")
		req.rec.Object = "lease/" + prefix
		if !strings.Contains(prefix, "/") {
			return nil, errorf(http.StatusBadRequest, "prefix %s is too broad: name a kind and object, such as db/shop-readonly", quote(body.Prefix))
		}
		if err := s.require(req, "lease/"+prefix+"/*", "revoke"); err != nil {
			return nil, err
		}
		// Each lease is checked as well, so a deny on a narrower prefix holds.
		allow := func(l store.Lease) bool {
			return l.Subject == req.caller.id || s.decide(req.caller.id, "lease/"+l.ID, "revoke").Allowed
		}
		n, err := s.leases.RevokePrefix(req.r.Context(), prefix, allow)
		if err != nil {
			return nil, &apiError{status: http.StatusServiceUnavailable, msg: "revoked " + strconv.Itoa(n) + " leases, then a backend failed; retry to revoke the rest", cause: err}
		}
		return map[string]any{"revoked": n}, nil
	default:
		return nil, errorf(http.StatusBadRequest, "missing lease_id or prefix")
	}
}

// leaseFor loads a lease and checks that the caller may act on it. The
// lease's own subject may revoke it, and renew it when the policy allows
// renew on the lease's object; anyone else needs the action on
// lease/<lease id>.
func (s *Server) leaseFor(req *request, id, action string) (store.Lease, *apiError) {
	l, err := s.leases.Get(req.r.Context(), id)
	if errors.Is(err, lease.ErrNotFound) {
		return store.Lease{}, errorf(http.StatusNotFound, "lease %s not found", quote(id))
	}
	if err != nil {
		return store.Lease{}, unavailable("lease store unavailable", err)
	}
	req.rec.Object = l.Object
	if l.Subject != req.caller.id {
		if err := s.require(req, "lease/"+l.ID, action); err != nil {
			return store.Lease{}, err
		}
		return l, nil
	}
	if action == "renew" {
		if err := s.require(req, l.Object, action); err != nil {
			return store.Lease{}, err
		}
	}
	return l, nil
}

func leaseError(id string, err error) *apiError {
	switch {
	case errors.Is(err, lease.ErrNotFound):
		return errorf(http.StatusNotFound, "lease %s is not active", quote(id))
	case errors.Is(err, lease.ErrNotRenewable):
		return errorf(http.StatusBadRequest, "lease %s is not renewable: certificates and JWTs are reissued, not extended", quote(id))
	case errors.Is(err, lease.ErrLeaseExpired):
		return errorf(http.StatusBadRequest, "lease %s has expired", quote(id))
	case errors.Is(err, lease.ErrGone):
		return errorf(http.StatusGone, "lease %s: the credential no longer exists at its backend; the lease is now revoked", quote(id))
	case errors.Is(err, lease.ErrMaxTTL):
		return errorf(http.StatusBadRequest, "lease %s has reached its maximum TTL; issue a new credential", quote(id))
	default:
		return unavailable("lease backend unavailable", err)
	}
}

type policyCheckRequest struct {
	Subject string `json:"subject"`
	Domain  string `json:"domain"`
	Object  string `json:"object"`
	Action  string `json:"action"`
}

type policyCheckResponse struct {
	Decision string `json:"decision"`
	Rule     string `json:"rule,omitempty"`
	Source   string `json:"source,omitempty"`
	Reason   string `json:"reason"`
}

func (s *Server) handlePolicyCheck(req *request) (any, *apiError) {
	var body policyCheckRequest
	if err := decode(req.r, &body); err != nil {
		return nil, err
	}
	req.rec.Object = "policy"
	if body.Subject == "" || body.Object == "" || body.Action == "" {
		return nil, errorf(http.StatusBadRequest, "subject, object and action are required")
	}
	if body.Domain == "" {
		body.Domain = s.cfg.Environment
	}
	if err := s.require(req, "policy", "read"); err != nil {
		return nil, err
	}
	d := s.authz.Decide(body.Subject, body.Domain, body.Object, body.Action)
	resp := policyCheckResponse{Decision: "deny", Rule: d.Rule, Source: d.Source, Reason: d.Reason}
	if d.Allowed {
		resp.Decision = "allow"
	}
	return resp, nil
}

func (s *Server) handlePolicyReload(req *request) (any, *apiError) {
	req.rec.Object = "policy"
	if err := s.require(req, "policy", "reload"); err != nil {
		return nil, err
	}
	if err := s.ReloadPolicy(); err != nil {
		return nil, errorf(http.StatusUnprocessableEntity, "policy rejected, previous policy stays in force: %v", err)
	}
	return map[string]any{"version": s.authz.Version(), "reloaded_at": time.Now().UTC()}, nil
}
