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
	Source  string // the rule's file and line, for example "policy.csv:12"
}

// RuleLister is implemented by authorizers that can list their rules. When
// the Authorizer also implements it, the server rejects a policy whose rules
// name an unknown service before anything is pushed, and queries Allowed only
// about the (caller, target) pairs some rule could match, instead of every
// pair of services.
//
// ConnectRules must return every allow rule in domain whose action matches
// connect, including rules for every domain ("*") and every action ("*").
// Subjects are SPIFFE IDs, patterns ending in "*", or "*". Roles should be
// expanded to their members, because an unexpanded role makes every service
// a candidate for that rule. A missing rule would silently drop a permitted
// connection, never add one.
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

// ServingIssuer is implemented by issuers that can also put host names and
// IP addresses into an SVID. The server then issues its own ADS certificate
// with Config.ServerHosts, because proxyless gRPC peers check the server's
// host name against the address they dial (gRFC A65 TLS channel
// credentials). Without it, Config.ServerCertificate must supply a
// certificate with those names.
type ServingIssuer interface {
	IssueServingSVID(ctx context.Context, spiffeID string, hosts []string, ttl time.Duration) (certChainPEM, keyPEM []byte, expiresAt time.Time, err error)
}
