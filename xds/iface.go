package xds

import (
	"context"
	"time"
)

// ActionConnect is the Casbin action that permits a caller to open
// connections to a service. The object is ObjectPrefix followed by the
// target's SPIFFE ID.
const (
	ActionConnect = "connect"
	ObjectPrefix  = "service/"
)

// Authorizer decides whether subject may perform action on object in domain.
// Implementations must fail closed: on any internal error they return false.
type Authorizer interface {
	Allowed(subject, domain, object, action string) bool
}

// AuthorizerFunc adapts a function to the Authorizer interface.
type AuthorizerFunc func(subject, domain, object, action string) bool

// Allowed calls f.
func (f AuthorizerFunc) Allowed(subject, domain, object, action string) bool {
	return f(subject, domain, object, action)
}

// ConnectRule is one `connect` rule as written in the policy, before roles
// and deny rules are applied.
type ConnectRule struct {
	Subject string
	Object  string
	Source  string // where the rule was read, for example "policy.csv:12"
}

// RuleLister is implemented by authorizers that can list their `connect`
// rules. When the Authorizer also implements it, the server rejects a policy
// whose rules name an unknown service before anything is pushed.
type RuleLister interface {
	ConnectRules(domain string) []ConnectRule
}

// Issuer signs X.509-SVIDs and publishes the trust bundle. TrustBundlePEM
// returns every CA certificate currently trusted, so that during a CA
// rotation it contains both the old and the new CA.
type Issuer interface {
	IssueSVID(ctx context.Context, spiffeID string, ttl time.Duration) (certChainPEM, keyPEM []byte, expiresAt time.Time, err error)
	TrustBundlePEM() []byte
}
