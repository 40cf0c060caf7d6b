package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// renewer is implemented by kinds whose leases the broker can extend: the
// agent renews such a lease, keeping the same secret, until the broker
// reaches the lease's maximum, and only then issues a new secret.
type renewer interface {
	renew(ctx context.Context, b *brokerClient, cr *Credential, c *issued, now time.Time) (*issued, error)
}

// errLeaseAtMax means the lease cannot be extended further, so the
// credential must be issued afresh.
var errLeaseAtMax = errors.New("lease at its maximum lifetime")

// leaseResponse is the lease the broker returns from POST /v1/leases/renew.
type leaseResponse struct {
	ID           string    `json:"id"`
	ExpiresAt    time.Time `json:"expires_at"`
	MaxExpiresAt time.Time `json:"max_expires_at"`
	Renewable    bool      `json:"renewable"`
}

// renewLease extends c's lease by its configured TTL (or its last lifetime)
// and returns a copy with the new expiry. It returns errLeaseAtMax when the
// extension would leave less than half a lifetime, so the caller reissues
// before the secret ends.
func renewLease(ctx context.Context, b *brokerClient, cr *Credential, c *issued, now time.Time) (*issued, error) {
	increment := cr.TTL.Duration
	if increment <= 0 {
		increment = c.lifetime()
	}
	var l leaseResponse
	body := map[string]string{"lease_id": c.leaseID, "increment": increment.String()}
	if err := b.post(ctx, "/v1/leases/renew", body, &l); err != nil {
		return nil, err
	}
	if !l.ExpiresAt.After(c.expiresAt) || l.ExpiresAt.Sub(now) < increment/2 {
		return nil, errLeaseAtMax
	}
	renewed := *c
	renewed.issuedAt, renewed.expiresAt = now, l.ExpiresAt
	return &renewed, nil
}

// dbKind is a PostgreSQL login from POST /v1/issue/db; path db/<role>.
type dbKind struct{}

func (dbKind) fields() []string { return []string{"username", "password", "dsn"} }

func (k dbKind) hasField(f string) bool { return slices.Contains(k.fields(), f) }

func (dbKind) suffix(field string) string { return field }

func (dbKind) validate(cr *Credential) error {
	if len(cr.Audience) > 0 {
		return errors.New("audience applies to jwt credentials only")
	}
	role, ok := strings.CutPrefix(cr.Path, "db/")
	if !ok || role == "" || strings.Contains(role, "/") {
		return fmt.Errorf("path %q: want db/<role>", cr.Path)
	}
	return nil
}

func (dbKind) issue(ctx context.Context, b *brokerClient, cr *Credential) (*issued, error) {
	body := map[string]string{"role": strings.TrimPrefix(cr.Path, "db/")}
	if cr.TTL.Duration > 0 {
		body["ttl"] = cr.TTL.Duration.String()
	}
	var resp struct {
		Username  string    `json:"username"`
		Password  string    `json:"password"`
		DSN       string    `json:"dsn"`
		LeaseID   string    `json:"lease_id"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := b.post(ctx, "/v1/issue/db", body, &resp); err != nil {
		return nil, err
	}
	if resp.Username == "" || resp.Password == "" || resp.ExpiresAt.IsZero() {
		return nil, errors.New("broker returned an incomplete database login")
	}
	return &issued{
		name: cr.Name,
		values: map[string][]byte{
			"username": []byte(resp.Username),
			"password": []byte(resp.Password),
			"dsn":      []byte(resp.DSN),
		},
		leaseID:   resp.LeaseID,
		issuedAt:  time.Now(),
		expiresAt: resp.ExpiresAt,
	}, nil
}

func (dbKind) renew(ctx context.Context, b *brokerClient, cr *Credential, c *issued, now time.Time) (*issued, error) {
	return renewLease(ctx, b, cr, c, now)
}

// vaultKind is a Vault-held secret from POST /v1/issue/vault; path
// vault/<vault path>. Its one file, data, is the secret as a JSON object;
// templates also see each key of it as a field.
type vaultKind struct{}

func (vaultKind) fields() []string { return []string{"data"} }

func (vaultKind) hasField(f string) bool { return f == "data" }

func (vaultKind) suffix(string) string { return "json" }

func (vaultKind) validate(cr *Credential) error {
	if len(cr.Audience) > 0 {
		return errors.New("audience applies to jwt credentials only")
	}
	if p, ok := strings.CutPrefix(cr.Path, "vault/"); !ok || p == "" {
		return fmt.Errorf("path %q: want vault/<path>, such as vault/kv/payments/api", cr.Path)
	}
	return nil
}

func (vaultKind) issue(ctx context.Context, b *brokerClient, cr *Credential) (*issued, error) {
	body := map[string]string{"path": strings.TrimPrefix(cr.Path, "vault/")}
	if cr.TTL.Duration > 0 {
		body["ttl"] = cr.TTL.Duration.String()
	}
	var resp struct {
		Data      map[string]string `json:"data"`
		Username  string            `json:"username"`
		Password  string            `json:"password"`
		LeaseID   string            `json:"lease_id"`
		ExpiresAt time.Time         `json:"expires_at"`
	}
	if err := b.post(ctx, "/v1/issue/vault", body, &resp); err != nil {
		return nil, err
	}
	data := resp.Data
	if data == nil {
		data = map[string]string{}
	}
	if resp.Username != "" {
		data["username"], data["password"] = resp.Username, resp.Password
	}
	if len(data) == 0 || resp.ExpiresAt.IsZero() {
		return nil, errors.New("broker returned an empty Vault secret")
	}
	encoded, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	values := map[string][]byte{"data": encoded}
	for k, v := range data {
		if k != "data" {
			values[k] = []byte(v)
		}
	}
	return &issued{name: cr.Name, values: values, leaseID: resp.LeaseID, issuedAt: time.Now(), expiresAt: resp.ExpiresAt}, nil
}

func (vaultKind) renew(ctx context.Context, b *brokerClient, cr *Credential, c *issued, now time.Time) (*issued, error) {
	return renewLease(ctx, b, cr, c, now)
}
