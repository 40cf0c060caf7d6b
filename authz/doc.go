// Package authz decides who may do what in ward. It loads a Casbin model and
// a CSV policy, makes authorization decisions and publishes each accepted
// policy version to the broker, the masking proxy and the mesh.
//
// The model is role-based access control with domains (Casbin's RBAC with
// domains). A request is (subject, domain, object, action). The subject is a
// SPIFFE ID and the domain an environment such as prod or dev. The object is
// a resource path such as x509/spiffe://example.org/ns/shop/sa/web or
// db/orders-readonly, and the action a verb such as issue or unmask.
//
// Security contract:
//   - Deny by default: a request that no policy line allows is denied, and an
//     explicit deny line wins over every allow line.
//   - Fail closed: a policy or model file that does not parse or validate is
//     rejected as a whole, with ErrInvalidPolicy naming file:line, and the
//     policy already in force stays in force. Malformed requests are denied:
//     empty, oversized or non-printable fields, . or .. path segments, a
//     role name or pattern as subject, * as domain or action, and the policy
//     words x509/self and jwt/self as object.
//   - Quarantine is a deny overlay that no policy line can override.
//   - ConnectRules lists, for a mesh, every allow line that can permit the
//     action connect in a domain, with role subjects expanded to the SPIFFE
//     IDs that hold the role. A test holds every connect request Decide
//     allows covered by a listed rule of the deciding line. A check set
//     with SetReloadCheck can reject a candidate policy before Reload
//     accepts it.
//   - Casbin decides: the matcher as Casbin parsed it from the model,
//     Casbin's role manager and Casbin's effector. For DefaultModel's
//     matcher an index selects the lines that can apply and a loop like
//     Casbin's evaluates only those. A differential test and a fuzz target
//     hold the result, including the deciding line, equal to Casbin's
//     Enforce over the whole policy. A model with another matcher gets no index: Casbin's Enforce
//     evaluates every line.
//   - Decisions and role lookups are cached per policy version, so a reload
//     never serves a result of the previous policy. The quarantine overlay
//     is checked before the cache.
//   - The package logs policy loads (version, file, line counts), quarantine
//     changes, and the request of a decision Casbin failed to make. Policy
//     lines and requests name identities and resources, never secrets.
package authz
