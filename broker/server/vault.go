package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"ward.dev/ward/broker/vault"
	"ward.dev/ward/internal/config"
	"ward.dev/ward/internal/store"
)

// vaultKVTTL is the lease of a KV secret, which Vault itself does not lease.
const vaultKVTTL = time.Hour

// openVault connects to Vault when the configuration has a vault: section.
// An unreachable Vault is not an error here: the client logs in in the
// background and issuance returns 503 until it is reachable.
func (s *Server) openVault(cfg *config.Config) error {
	if !cfg.Vault.Set() {
		return nil
	}
	var vc vault.Config
	if err := cfg.Vault.Node.Decode(&vc); err != nil {
		return err
	}
	c, err := vault.New(context.Background(), vc, vault.Options{Logger: s.log, Now: s.now})
	if err != nil {
		return err
	}
	s.vault = c
	s.vaultIss = vault.NewIssuer(c)
	actions := leaseActions{backend: s.vaultIss, gone: vault.ErrGone}
	s.leases.Register("vault", actions, actions)
	if cfg.CA.Backend == "vault-pki" {
		s.leases.Register("x509", vaultPKIRevoker{s}, nil)
	}
	return nil
}

type vaultRequest struct {
	Path string `json:"path"`
	TTL  string `json:"ttl,omitempty"`
}

type vaultResponse struct {
	Data      map[string]string `json:"data,omitempty"`
	Version   int               `json:"version,omitempty"`
	Username  string            `json:"username,omitempty"`
	Password  string            `json:"password,omitempty"`
	LeaseID   string            `json:"lease_id"`
	ExpiresAt time.Time         `json:"expires_at"`
}

// handleIssueVault hands out a Vault secret: kv/<mount>/<path> (KV v2) or
// <mount>/creds/<role> (dynamic database credentials). The policy object is
// vault/<path>.
func (s *Server) handleIssueVault(req *request) (any, *apiError) {
	var body vaultRequest
	if err := decode(req.r, &body); err != nil {
		return nil, err
	}
	req.rec.Object = "vault/" + body.Path
	if s.vaultIss == nil {
		return nil, errorf(http.StatusNotFound, "Vault is not configured on this server")
	}
	if body.Path == "" || strings.Contains(body.Path, "..") || strings.ContainsAny(body.Path, "*?#") {
		return nil, errorf(http.StatusBadRequest, "invalid path %s, want kv/<mount>/<path> or <mount>/creds/<role>", quote(body.Path))
	}
	return s.issueFromVault(req, body.Path, "vault/"+body.Path, body.TTL)
}

// issueFromVault issues path from Vault under a lease on object.
func (s *Server) issueFromVault(req *request, path, object, rawTTL string) (any, *apiError) {
	start := time.Now()
	ttl, aerr := parseTTL(rawTTL, minDuration(s.cfg.TTL.Default.Duration, vaultKVTTL), s.cfg.TTL.Max.Duration)
	if aerr != nil {
		return nil, aerr
	}
	if err := s.require(req, object, "issue"); err != nil {
		return nil, err
	}

	ctx := req.r.Context()
	now := s.now()
	expires := now.Add(ttl)
	cred, meta, err := s.vaultIss.Issue(ctx, path, req.caller.id, expires)
	if err != nil {
		return nil, vaultError(err)
	}
	renewable := !cred.ExpiresAt.IsZero()
	if renewable && cred.ExpiresAt.Before(expires) {
		expires = cred.ExpiresAt
	}
	leaseID, err := newLeaseID(object)
	if err != nil {
		return nil, internal("lease id", err)
	}
	l := store.Lease{
		ID: leaseID, Kind: "vault", Object: object, Subject: req.caller.id,
		IssuedAt: now, ExpiresAt: expires, MaxExpiresAt: now.Add(s.cfg.TTL.Max.Duration), Renewable: renewable, Meta: meta,
	}
	if !renewable {
		l.MaxExpiresAt = expires
	}
	if aerr := s.createLease(ctx, l); aerr != nil {
		if renewable {
			s.revokeUntracked(meta)
		}
		return nil, aerr
	}

	resp := vaultResponse{Version: cred.Version, Username: cred.Username, LeaseID: leaseID, ExpiresAt: expires}
	hmacs := map[string]string{}
	if cred.Password.Len() > 0 {
		pw := cred.Password.Reveal()
		resp.Password = string(pw)
		hmacs["password"] = s.audit.HMAC(pw)
	}
	if len(cred.Data) > 0 {
		resp.Data = make(map[string]string, len(cred.Data))
		for k, v := range cred.Data {
			raw := v.Reveal()
			resp.Data[k] = string(raw)
			hmacs["data."+k] = s.audit.HMAC(raw)
		}
	}
	req.rec.LeaseID = leaseID
	req.rec.HMACs = hmacs
	s.met.issued("vault", time.Since(start))
	return resp, nil
}

func (s *Server) revokeUntracked(meta map[string]string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.vaultIss.Revoke(ctx, meta); err != nil {
		s.log.Error("revoking untracked Vault lease failed", "error", err)
	}
}

// vaultError maps an issuer failure: an unreachable or sealed Vault is 503
// with Retry-After naming it, a denial 403, a missing path 404.
func vaultError(err error) *apiError {
	var unavail *vault.UnavailableError
	switch {
	case errors.As(err, &unavail):
		return &apiError{
			status:     http.StatusServiceUnavailable,
			msg:        unavail.BackendName() + " unavailable, no credential issued; retry later",
			cause:      err,
			retryAfter: strconv.Itoa(int(unavail.RetryAfter().Seconds())),
		}
	case errors.Is(err, vault.ErrDenied):
		return &apiError{status: http.StatusForbidden, msg: "Vault denied the request", cause: err}
	case errors.Is(err, vault.ErrNotFound):
		return errorf(http.StatusNotFound, "no such secret in Vault")
	default:
		return internal("Vault request", err)
	}
}
