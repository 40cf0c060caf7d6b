package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"ward.dev/ward/broker/lease"
	"ward.dev/ward/broker/pgcred"
	"ward.dev/ward/internal/config"
	"ward.dev/ward/internal/store"
)

// openDatabases prepares the issuer of dynamic PostgreSQL logins, when the
// configuration names any database role, and registers its lease actions.
func (s *Server) openDatabases(roles []config.DatabaseRole) error {
	converted := make([]pgcred.Role, 0, len(roles))
	for _, r := range roles {
		if r.Issuer == "vault" {
			if s.vaultDB == nil {
				s.vaultDB = map[string]string{}
			}
			s.vaultDB[r.Name] = r.VaultPath
			continue
		}
		converted = append(converted, pgcred.Role{
			Name:       r.Name,
			DSN:        r.DSN,
			Password:   pgcred.SecretRef{Env: r.Password.Env, File: r.Password.File},
			Creation:   r.Creation,
			Revocation: r.Revocation,
			DefaultTTL: r.DefaultTTL.Duration,
			MaxTTL:     r.MaxTTL.Duration,
		})
	}
	if len(converted) == 0 {
		return nil
	}
	iss, err := pgcred.New(converted, pgcred.Options{Logger: s.log, Now: s.now})
	if err != nil {
		return err
	}
	s.pg = iss
	actions := leaseActions{backend: iss, gone: pgcred.ErrGone}
	s.leases.Register("db", actions, actions)
	return nil
}

// metaBackend is an issuer that renews and revokes a credential from the
// metadata stored in its lease.
type metaBackend interface {
	Renew(ctx context.Context, meta map[string]string, expiresAt time.Time) error
	Revoke(ctx context.Context, meta map[string]string) error
}

// leaseActions adapts a metaBackend to the lease manager. gone is the
// backend's error for a credential that no longer exists.
type leaseActions struct {
	backend metaBackend
	gone    error
}

func (a leaseActions) Revoke(ctx context.Context, l store.Lease) error {
	return a.backend.Revoke(ctx, l.Meta)
}

func (a leaseActions) Renew(ctx context.Context, l store.Lease, expiresAt time.Time) error {
	err := a.backend.Renew(ctx, l.Meta, expiresAt)
	if errors.Is(err, a.gone) {
		return fmt.Errorf("%w: %v", lease.ErrGone, err)
	}
	return err
}

type dbRequest struct {
	Role     string `json:"role"`
	TTL      string `json:"ttl,omitempty"`
	ViaProxy bool   `json:"via_proxy,omitempty"` // a login valid only at ward's masking proxy
}

type dbResponse struct {
	Username  string    `json:"username"`
	Password  string    `json:"password"`
	DSN       string    `json:"dsn"`
	LeaseID   string    `json:"lease_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// handleIssueDB creates a PostgreSQL login for a role. The lease is written
// before the password is returned; if it cannot be, the login is dropped.
func (s *Server) handleIssueDB(req *request) (any, *apiError) {
	var body dbRequest
	if err := decode(req.r, &body); err != nil {
		return nil, err
	}
	return s.issueDB(req, body)
}

// issueDB issues a login of a database role: through Vault, through the
// masking proxy, or created by ward itself.
func (s *Server) issueDB(req *request, body dbRequest) (any, *apiError) {
	start := time.Now()
	object := "db/" + body.Role
	req.rec.Object = object
	if body.Role == "" {
		return nil, errorf(http.StatusBadRequest, "missing role")
	}
	if body.ViaProxy {
		if s.pgproxy == nil {
			return nil, errorf(http.StatusNotFound, "the PostgreSQL masking proxy is not configured on this server (pgproxy:)")
		}
		ttl, aerr := parseTTL(body.TTL, s.cfg.TTL.Default.Duration, s.cfg.TTL.Max.Duration)
		if aerr != nil {
			return nil, aerr
		}
		return s.issueProxyLogin(req, body.Role, object, ttl)
	}
	if path, ok := s.vaultDB[body.Role]; ok {
		return s.issueFromVault(req, path, object, body.TTL)
	}
	if s.pg == nil {
		return nil, errorf(http.StatusNotFound, "no database roles are configured on this server")
	}
	def, max, err := s.pg.TTLs(body.Role)
	if errors.Is(err, pgcred.ErrUnknownRole) {
		return nil, errorf(http.StatusNotFound, "unknown database role %s", quote(body.Role))
	}
	if err != nil {
		return nil, internal("database role lookup", err)
	}
	ttl, aerr := parseTTL(body.TTL, def, max)
	if aerr != nil {
		return nil, aerr
	}
	if err := s.require(req, object, "issue"); err != nil {
		return nil, err
	}

	ctx := req.r.Context()
	now := s.now()
	cred, meta, err := s.pg.Issue(ctx, body.Role, req.caller.id, now.Add(ttl))
	if err != nil {
		return nil, backendError(err)
	}
	leaseID, err := newLeaseID(object)
	if err != nil {
		s.dropLogin(meta)
		return nil, internal("lease id", err)
	}
	maxExpires := now.Add(max)
	if raw, ok := meta[pgcred.MetaMaxExpiresAt]; ok {
		if t, err := time.Parse(time.RFC3339Nano, raw); err == nil {
			maxExpires = t
		}
	}
	l := store.Lease{
		ID: leaseID, Kind: "db", Object: object, Subject: req.caller.id,
		IssuedAt: now, ExpiresAt: now.Add(ttl), MaxExpiresAt: maxExpires, Renewable: true, Meta: meta,
	}
	if aerr := s.createLease(ctx, l); aerr != nil {
		s.dropLogin(meta)
		return nil, aerr
	}

	password := cred.Password.Reveal()
	req.rec.LeaseID = leaseID
	req.rec.HMACs = map[string]string{"password": s.audit.HMAC(password)}
	s.met.issued("db", time.Since(start))
	return dbResponse{Username: cred.Username, Password: string(password), DSN: cred.DSN, LeaseID: leaseID, ExpiresAt: l.ExpiresAt}, nil
}

// dropLogin removes a login whose lease could not be recorded, so no
// credential exists that ward does not track.
func (s *Server) dropLogin(meta map[string]string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.pg.Revoke(ctx, meta); err != nil {
		s.log.Error("dropping untracked database login failed", "username", meta[pgcred.MetaUsername], "error", err)
	}
}

// backendError maps an issuer failure to the API: 503 with Retry-After
// naming the backend when it is unreachable.
func backendError(err error) *apiError {
	var unavail *pgcred.UnavailableError
	if errors.As(err, &unavail) {
		return &apiError{
			status:     http.StatusServiceUnavailable,
			msg:        unavail.BackendName() + " unavailable, no credential issued; retry later",
			cause:      err,
			retryAfter: strconv.Itoa(int(unavail.RetryAfter().Seconds())),
		}
	}
	if errors.Is(err, pgcred.ErrBeyondMaxTTL) {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	return internal("database login creation", err)
}

// rotateDBLease replaces a database login whose lease has reached its
// maximum TTL. It issues a new login of the same role to the same holder and
// keeps the old one for the rotation grace period, after which the sweeper
// revokes it. The renew response carries the new credential, so
// the holder learns of the rotation from the call it already makes.
func (s *Server) rotateDBLease(req *request, old store.Lease) (any, *apiError) {
	role := strings.TrimPrefix(old.Object, "db/")
	resp, aerr := s.issueDB(req, dbRequest{Role: role, ViaProxy: old.Kind == "proxy"})
	if aerr != nil {
		return nil, aerr
	}
	// The store keeps milliseconds; the response states what it keeps.
	graceEnd := s.now().Add(s.cfg.TTL.RotationGrace.Duration).Truncate(time.Millisecond)
	if graceEnd.After(old.MaxExpiresAt) {
		graceEnd = old.MaxExpiresAt
	}
	if err := s.store.ExtendLease(req.r.Context(), old.ID, graceEnd); err != nil {
		s.log.Warn("shortening the replaced lease failed; it ends at its own expiry", "lease_id", old.ID, "error", err)
		graceEnd = old.ExpiresAt
	}
	s.log.Info("database login rotated at its maximum TTL", "previous_lease_id", old.ID, "lease_id", req.rec.LeaseID, "previous_ends_at", graceEnd)
	return map[string]any{
		"rotated":             true,
		"previous_lease_id":   old.ID,
		"previous_expires_at": graceEnd,
		"credential":          resp,
	}, nil
}
