package authz

import (
	"fmt"
	"slices"
	"strings"
)

// actionConnect is the action a mesh requests when one service opens a
// connection to another.
const actionConnect = "connect"

// spiffeScheme is the prefix of every SPIFFE ID, and so of every subject
// in a mesh's requests.
const spiffeScheme = "spiffe://"

// ConnectRule is one allow line that can permit a connect request, with its
// subject expanded from a role to one of the role's members.
type ConnectRule struct {
	Subject string // a SPIFFE ID, a pattern ending in *, or * alone
	Object  string // the line's object, for example service/<spiffe-id>, service/*, or *
	Source  string // the line that grants it, "policy.csv:12"
}

// RuleSource lists the connect rules of one policy: the policy in force
// (Enforcer) or a candidate that Reload is about to accept.
type RuleSource interface {
	ConnectRules(domain string) []ConnectRule
}

var _ RuleSource = (*Enforcer)(nil)

// ConnectRules returns every allow line of the policy in force that can
// permit the action connect in domain. A mesh uses the list to decide which
// (caller, target) pairs to ask Decide about, and to find lines that name
// services it does not know.
//
// A line qualifies when its action is connect or *, and its domain is
// domain or *, whatever its object. Deny lines are left out, because they
// can only take permissions away, so Decide still has the last word on
// every pair. A role subject becomes one rule per SPIFFE ID that holds the
// role in domain, directly or through other roles, where a role granted in
// domain * holds in every domain. Subjects that can never be a SPIFFE ID
// (an exact name without the spiffe:// scheme) are left out, because the
// matcher compares them with the request subject as they are.
//
// With a model whose matcher is not DefaultModel's, the fields of a line
// may mean something else, so the list is one rule with subject * and
// object * whose Source is the model's matcher line. A mesh then decides
// every pair. The result is in policy file order.
func (e *Enforcer) ConnectRules(domain string) []ConnectRule {
	return e.current.Load().ConnectRules(domain)
}

// ConnectRules implements RuleSource for one snapshot, so that a reload
// check reads the candidate policy.
func (s *snapshot) ConnectRules(domain string) []ConnectRule {
	if !s.model.indexed {
		source := fmt.Sprintf("%s:%d", s.model.path, s.model.matcherLine)
		return []ConnectRule{{Subject: wildcard, Object: wildcard, Source: source}}
	}

	var members map[string][]string
	var out []ConnectRule
	for _, r := range s.policy.rules {
		sub, dom, obj, act, eft := r.fields[0], r.fields[1], r.fields[2], r.fields[3], r.fields[4]
		if eft != effectAllow || (act != actionConnect && act != wildcard) || (dom != domain && dom != wildcard) {
			continue
		}

		if !strings.HasPrefix(sub, rolePrefix) {
			if canMatchSPIFFEID(sub) {
				out = append(out, ConnectRule{Subject: sub, Object: obj, Source: r.source})
			}
			continue
		}

		if members == nil {
			members = s.roleMembers(domain)
		}
		for _, m := range members[sub] {
			out = append(out, ConnectRule{Subject: m, Object: obj, Source: r.source})
		}
	}
	return out
}

// canMatchSPIFFEID reports whether the subject of a p line can match some
// SPIFFE ID: the matcher's keyMatch treats a trailing * as any rest and
// compares everything else exactly.
func canMatchSPIFFEID(sub string) bool {
	if prefix, ok := strings.CutSuffix(sub, wildcard); ok {
		return strings.HasPrefix(spiffeScheme, prefix) || strings.HasPrefix(prefix, spiffeScheme)
	}
	return strings.HasPrefix(sub, spiffeScheme)
}

// roleMembers maps each role to the sorted SPIFFE IDs that hold it in
// domain, directly or through other roles. closeRoles follows chains of
// any length, so the result includes every member Casbin's role manager
// can confirm, which stops after ten levels.
func (s *snapshot) roleMembers(domain string) map[string][]string {
	out := make(map[string][]string)
	for member, roles := range s.closeRoles(domain) {
		if !canMatchSPIFFEID(member) {
			continue
		}
		for _, role := range roles {
			out[role] = append(out[role], member)
		}
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}
