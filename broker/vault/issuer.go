package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"ward.dev/ward/broker/lease"

	"github.com/hashicorp/vault/api"

	"ward.dev/ward/crypto/secret"
)

// Meta keys that Issue returns and Renew and Revoke read.
const (
	MetaType    = "type"     // "kv" or "lease"
	MetaPath    = "path"     // the Vault path read
	MetaVersion = "version"  // KV v2 version
	MetaLeaseID = "lease_id" // Vault lease of a dynamic secret
)

// Credential is a secret read from Vault. Exactly one group of fields is
// set: Username and Password for database credentials, or Data and Version
// for a KV v2 secret.
type Credential struct {
	Username string
	Password secret.Bytes

	// Data holds the KV fields. A field that is not a JSON string is
	// stored as its JSON encoding.
	Data    map[string]secret.Bytes
	Version int

	// ExpiresAt is when Vault ends the lease, zero for KV secrets. It can
	// be earlier than the expiry Issue was asked for, when the Vault role's
	// max TTL is shorter, so the lease manager should keep the earlier one.
	ExpiresAt time.Time
}

// Issuer hands out Vault secrets to ward's lease manager. It is safe for
// concurrent use.
type Issuer struct {
	c *Client

	// RevokeConcurrency bounds parallel revocations in RevokeEach and
	// RevokeMany.
	// Default 8.
	RevokeConcurrency int
}

// NewIssuer returns an Issuer that uses c.
func NewIssuer(c *Client) *Issuer { return &Issuer{c: c, RevokeConcurrency: 8} }

// Issue reads the secret at role, which is one of
//
//	kv/<mount>/<path>       the latest version of a KV v2 secret
//	<mount>/creds/<name>    dynamic database credentials
//
// For credentials with a lease it renews the lease to expiresAt when Vault
// issued a shorter one, as far as the Vault role allows. subject is only
// logged.
func (iss *Issuer) Issue(ctx context.Context, role, subject string, expiresAt time.Time) (Credential, map[string]string, error) {
	if rest, ok := strings.CutPrefix(role, "kv/"); ok {
		mount, path, ok := strings.Cut(rest, "/")
		if !ok || mount == "" || path == "" {
			return Credential{}, nil, fmt.Errorf("vault: %q is invalid, want kv/<mount>/<path>", role)
		}
		return iss.readKV(ctx, mount, path, subject)
	}
	if mount, name, ok := strings.Cut(role, "/creds/"); ok && mount != "" && name != "" && !strings.Contains(name, "/") {
		return iss.databaseCreds(ctx, role, subject, expiresAt)
	}
	return Credential{}, nil, fmt.Errorf("vault: %q is invalid, want kv/<mount>/<path> or <mount>/creds/<role>", role)
}

func (iss *Issuer) readKV(ctx context.Context, mount, path, subject string) (Credential, map[string]string, error) {
	if err := iss.c.ready(); err != nil {
		return Credential{}, nil, err
	}
	kv, err := iss.c.api.KVv2(mount).Get(ctx, path)
	if errors.Is(err, api.ErrSecretNotFound) {
		return Credential{}, nil, fmt.Errorf("vault: kv %s/%s: %w", mount, path, ErrNotFound)
	}
	if err != nil {
		return Credential{}, nil, fmt.Errorf("vault: reading kv %s/%s: %w", mount, path, iss.c.classify(err))
	}

	cred := Credential{Data: make(map[string]secret.Bytes, len(kv.Data))}
	for k, v := range kv.Data {
		if s, ok := v.(string); ok {
			cred.Data[k] = secret.New([]byte(s))
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return Credential{}, nil, fmt.Errorf("vault: kv %s/%s field %q: %w", mount, path, k, err)
		}
		cred.Data[k] = secret.New(b)
		clear(b)
	}
	if kv.VersionMetadata != nil {
		cred.Version = kv.VersionMetadata.Version
	}

	iss.c.log.InfoContext(ctx, "vault kv secret read", "mount", mount, "path", path,
		"version", cred.Version, "subject", subject)
	meta := map[string]string{
		MetaType:    "kv",
		MetaPath:    mount + "/" + path,
		MetaVersion: strconv.Itoa(cred.Version),
	}
	return cred, meta, nil
}

func (iss *Issuer) databaseCreds(ctx context.Context, path, subject string, expiresAt time.Time) (Credential, map[string]string, error) {
	if err := iss.c.ready(); err != nil {
		return Credential{}, nil, err
	}
	s, err := iss.c.api.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return Credential{}, nil, fmt.Errorf("vault: reading %s: %w", path, iss.c.classify(err))
	}
	if s == nil || s.Data == nil {
		return Credential{}, nil, fmt.Errorf("vault: %s: %w", path, ErrNotFound)
	}
	username, _ := s.Data["username"].(string)
	password, _ := s.Data["password"].(string)
	if username == "" || password == "" || s.LeaseID == "" {
		return Credential{}, nil, fmt.Errorf("vault: %s returned no username, password or lease", path)
	}

	now := iss.c.now()
	cred := Credential{
		Username:  username,
		Password:  secret.New([]byte(password)),
		ExpiresAt: now.Add(time.Duration(s.LeaseDuration) * time.Second),
	}
	meta := map[string]string{MetaType: "lease", MetaPath: path, MetaLeaseID: s.LeaseID}

	if !expiresAt.IsZero() && cred.ExpiresAt.Before(expiresAt) && s.Renewable {
		granted, err := iss.renewLease(ctx, s.LeaseID, expiresAt)
		if err == nil || errors.Is(err, ErrBeyondMaxTTL) {
			cred.ExpiresAt = granted
		} else {
			iss.c.log.WarnContext(ctx, "vault lease renewal after issuance failed", "lease_id", s.LeaseID, "error", err)
		}
	}

	iss.c.warnIfTokenEndsFirst(ctx, s.LeaseID, cred.ExpiresAt)
	iss.c.log.InfoContext(ctx, "vault database credentials issued", "path", path,
		"lease_id", s.LeaseID, "username", username, "subject", subject, "expires_at", cred.ExpiresAt.UTC())
	return cred, meta, nil
}

// Renew extends a lease to newExpiry. KV secrets have no lease and renew
// trivially. It returns ErrGone when the lease no longer exists in Vault
// and a *ShortRenewalError (ErrBeyondMaxTTL) when Vault granted less.
func (iss *Issuer) Renew(ctx context.Context, meta map[string]string, newExpiry time.Time) error {
	switch meta[MetaType] {
	case "kv":
		return nil
	case "lease":
	default:
		return fmt.Errorf("vault: lease meta %s=%q is invalid", MetaType, meta[MetaType])
	}
	leaseID := meta[MetaLeaseID]
	if leaseID == "" {
		return fmt.Errorf("vault: lease meta has no %s", MetaLeaseID)
	}
	if err := iss.c.ready(); err != nil {
		return err
	}

	granted, err := iss.renewLease(ctx, leaseID, newExpiry)
	if err != nil {
		return err
	}
	iss.c.warnIfTokenEndsFirst(ctx, leaseID, granted)
	iss.c.log.InfoContext(ctx, "vault lease renewed", "lease_id", leaseID, "expires_at", granted.UTC())
	return nil
}

// renewLease requests that Vault extend leaseID to newExpiry and returns the
// expiry Vault granted.
func (iss *Issuer) renewLease(ctx context.Context, leaseID string, newExpiry time.Time) (time.Time, error) {
	now := iss.c.now()
	increment := int(math.Ceil(newExpiry.Sub(now).Seconds()))
	if increment < 1 {
		increment = 1
	}
	s, err := iss.c.api.Sys().RenewWithContext(ctx, leaseID, increment)
	if isLeaseNotFound(err) {
		return time.Time{}, fmt.Errorf("vault: renewing %s: %w", leaseID, ErrGone)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("vault: renewing %s: %w", leaseID, iss.c.classify(err))
	}
	if s == nil {
		return time.Time{}, fmt.Errorf("vault: renewing %s returned no lease", leaseID)
	}

	granted := now.Add(time.Duration(s.LeaseDuration) * time.Second)
	// Vault counts in whole seconds, so a second of difference is rounding.
	if granted.Before(newExpiry.Add(-time.Second)) {
		return granted, &ShortRenewalError{LeaseID: leaseID, Granted: granted}
	}
	return granted, nil
}

// Revoke revokes a lease. KV secrets have no lease and revoke trivially.
// A lease that no longer exists in Vault counts as revoked.
func (iss *Issuer) Revoke(ctx context.Context, meta map[string]string) error {
	switch meta[MetaType] {
	case "kv":
		return nil
	case "lease":
	default:
		return fmt.Errorf("vault: lease meta %s=%q is invalid", MetaType, meta[MetaType])
	}
	leaseID := meta[MetaLeaseID]
	if leaseID == "" {
		return fmt.Errorf("vault: lease meta has no %s", MetaLeaseID)
	}
	if err := iss.c.ready(); err != nil {
		return err
	}

	err := iss.c.api.Sys().RevokeWithContext(ctx, leaseID)
	if isLeaseNotFound(err) {
		iss.c.log.InfoContext(ctx, "vault lease already gone", "lease_id", leaseID)
		return nil
	}
	if err != nil {
		return fmt.Errorf("vault: revoking %s: %w", leaseID, iss.c.classify(err))
	}
	iss.c.log.InfoContext(ctx, "vault lease revoked", "lease_id", leaseID)
	return nil
}

// RevokeMany revokes the leases in metas and returns one error (nil on
// success) per lease, in the same order. See RevokeEach for the bounds.
func (iss *Issuer) RevokeMany(ctx context.Context, metas []map[string]string) []error {
	return lease.RevokeMany(ctx, iss.RevokeConcurrency, metas, iss.Revoke)
}

// RevokeEach revokes every lease that leases yields, with bounded
// concurrency, and calls done with each lease's position and result (see
// lease.RevokeEach).
func (iss *Issuer) RevokeEach(ctx context.Context, leases iter.Seq[map[string]string], done func(n int, err error)) {
	lease.RevokeEach(ctx, iss.RevokeConcurrency, leases, iss.Revoke, done)
}

// isLeaseNotFound reports Vault's 400 "lease not found", returned for
// unknown and expired leases alike.
func isLeaseNotFound(err error) bool {
	var respErr *api.ResponseError
	if !errors.As(err, &respErr) || respErr.StatusCode != http.StatusBadRequest {
		return false
	}
	for _, e := range respErr.Errors {
		if strings.Contains(e, "lease not found") || strings.Contains(e, "invalid lease") {
			return true
		}
	}
	return false
}

// ready returns *UnavailableError while the Client has no valid token.
func (c *Client) ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.token.loggedIn {
		return &UnavailableError{Backend: c.backend, Err: errors.New("not logged in, retrying in the background")}
	}
	return nil
}
