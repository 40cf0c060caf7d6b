package authz

import (
	"fmt"
	"log/slog"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Decision is the outcome of one authorization check.
type Decision struct {
	Allowed bool
	// Rule is the policy line that decided, as written, for example
	// "p, role:admin, *, *, *, allow". It is empty when no line matched.
	Rule string
	// Source is "file:line" of Rule, for example "policy.csv:12", with the
	// file's base name. It is empty when no line matched.
	Source string
	// Reason is a short text for people and audit records.
	Reason string
}

// checkRequest returns why a request is malformed, or "" when it is not.
// Malformed requests are denied before Casbin evaluates them.
func checkRequest(subject, domain, object, action string) string {
	fields := [...]struct{ name, value string }{
		{"subject", subject}, {"domain", domain}, {"object", object}, {"action", action},
	}
	for _, f := range fields {
		if f.value == "" {
			return f.name + " is empty"
		}
		if len(f.value) > maxFieldBytes {
			return fmt.Sprintf("%s is longer than %d bytes", f.name, maxFieldBytes)
		}
		if problem := checkText(f.value); problem != "" {
			return f.name + " " + problem
		}
	}

	// A subject that is a role name or a pattern would match policy lines
	// written for that role or pattern, so only concrete identities may ask.
	if strings.HasPrefix(subject, rolePrefix) {
		return "subject is a role name"
	}
	if strings.Contains(subject, wildcard) {
		return "subject contains *"
	}
	if domain == wildcard || action == wildcard {
		return "domain and action must be concrete, not *"
	}

	// x509/self and jwt/self are policy words for "the caller's own ID". A
	// request names the ID itself, so a caller that passes the word on has a
	// bug that could issue a credential for an ID that no one checked.
	if object == selfX509 || object == selfJWT {
		return "object " + object + " is a policy keyword; request x509/<SPIFFE ID> or jwt/<SPIFFE ID>"
	}

	// SPIFFE IDs have no . or .. path segments. Rejecting them here keeps a
	// prefix line such as spiffe://example.org/ns/shop/* from matching a
	// name that a path resolver would read as outside that prefix.
	if hasDotSegment(subject) {
		return "subject has a . or .. path segment"
	}
	if hasDotSegment(object) {
		return "object has a . or .. path segment"
	}
	return ""
}

// checkText returns what is wrong with s, or "" when it is valid UTF-8
// without spaces or control characters. Plain ASCII takes the fast path.
func checkText(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return checkRunes(s)
		}
		if c <= ' ' || c == 0x7f {
			return "contains a space or control character"
		}
	}
	return ""
}

func checkRunes(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for _, c := range s {
		if unicode.IsSpace(c) || unicode.IsControl(c) {
			return "contains a space or control character"
		}
	}
	return ""
}

func hasDotSegment(s string) bool {
	for s != "" {
		segment, rest, _ := strings.Cut(s, "/")
		if segment == "." || segment == ".." {
			return true
		}
		s = rest
	}
	return false
}

// decide returns Casbin's decision for a well-formed request under this
// snapshot, from the cache when it holds one.
func (s *snapshot) decide(sub, dom, obj, act string) Decision {
	key := cacheKey{sub: sub, dom: dom, obj: obj, act: act}
	if d, ok := s.cache.get(key); ok {
		return d
	}

	d := s.evaluate(sub, dom, obj, act)
	putRequest(s.cache, key, d)
	return d
}

// evaluate runs Casbin's matcher and effect on the lines that can apply to
// the request, or on all lines when the matcher is custom.
func (s *snapshot) evaluate(sub, dom, obj, act string) Decision {
	if !s.model.indexed {
		// NOTE: Enforce keeps the g results of its first call's matcher in a
		// map that grows with each new subject until the next reload.
		allowed, explain, err := s.enforcer.EnforceEx(sub, dom, obj, act)
		return s.explain(sub, dom, obj, act, allowed, explain, err)
	}

	indexes := s.candidates(make([]int32, 0, 16), sub, dom, obj, act)

	// No line can match, so the effect "some allow and no deny" is false.
	if len(indexes) == 0 {
		return s.explain(sub, dom, obj, act, false, nil, nil)
	}

	lines := make([][]any, len(indexes))
	for j, i := range indexes {
		lines[j] = s.boxed[i]
	}

	casbinDomain := dom
	if !s.domains[dom] {
		casbinDomain = otherDomain
	}

	allowed, decided, err := s.evaluator.decide(sub, casbinDomain, obj, act, lines)
	var explain []string
	if decided >= 0 {
		explain = s.policy.rules[indexes[decided]].fields
	}
	return s.explain(sub, dom, obj, act, allowed, explain, err)
}

// explain turns Casbin's result into a Decision. Casbin explains a deny by
// the first matching deny line and an allow by the first matching allow
// line, in file order.
func (s *snapshot) explain(sub, dom, obj, act string, allowed bool, explain []string, err error) Decision {
	if err != nil {
		return s.failed(sub, dom, obj, act, err)
	}

	if len(explain) == 0 {
		if allowed {
			// A custom matcher can allow without any line (an empty policy
			// evaluates the matcher once with empty line fields).
			return Decision{Allowed: true, Reason: "allowed by the model's matcher"}
		}
		return Decision{Reason: fmt.Sprintf("no rule allows %s on %s in %s (default deny)", act, obj, dom)}
	}

	i, ok := s.ruleIndex(explain)
	if !ok {
		return s.failed(sub, dom, obj, act, fmt.Errorf("casbin explained the decision by %q, which is not a line of %s", explain, s.source))
	}

	r := s.policy.rules[i]
	if allowed {
		return Decision{Allowed: true, Rule: r.text, Source: r.source, Reason: r.reason}
	}
	return Decision{Rule: r.text, Source: r.source, Reason: r.reason}
}

// ruleIndex returns the index in policy.rules of the line that decided.
// Both paths return the very slice they evaluated, which is found by the
// address of its first field; the key lookup is a fallback in case Casbin
// returns a copy.
func (s *snapshot) ruleIndex(explain []string) (int, bool) {
	if len(explain) > 0 {
		if i, ok := s.ruleByField[&explain[0]]; ok {
			return i, true
		}
	}
	i, ok := s.ruleOf[rule{ptype: ptypePolicy, fields: explain}.key()]
	return i, ok
}

// failed logs a Casbin error and returns a denial. Casbin reports panics in
// a matcher function as errors that carry a stack trace, so the trace goes to
// the log and not into the Decision.
func (s *snapshot) failed(sub, dom, obj, act string, err error) Decision {
	s.logger.Error("authorization failed",
		slog.String("subject", sub), slog.String("domain", dom),
		slog.String("object", obj), slog.String("action", act),
		slog.Uint64("version", s.version), slog.Any("error", err))
	return Decision{Reason: "authorization failed: internal error, see the server log"}
}
