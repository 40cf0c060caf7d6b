package authz

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/rbac"
	"github.com/casbin/casbin/v2/util"
)

// otherDomain is the domain Casbin evaluates in place of every request domain
// that no policy line names. For such a domain every line's domain test
// reduces to p.dom == "*", and only g lines with domain * apply, so all of
// them decide alike. One registered name spares Casbin's role manager from
// building a temporary copy of the * links on every lookup. The NUL byte keeps
// it apart from every real domain, since requests with control characters are
// denied.
const otherDomain = "\x00other"

// domainAnchor is a role name used only to register domains with Casbin's
// role manager (a self link, which no subject can reach).
const domainAnchor = "\x00ward-domain-anchor"

// snapshot is one accepted model and policy with everything derived from it.
// It is immutable after load except for its caches of decisions and role
// lookups, which are safe for concurrent use.
type snapshot struct {
	version uint64
	model   *modelFile
	policy  *policyFile
	source  string // policy file name used in Decision.Source

	// enforcer holds the whole policy and builds the role manager. It decides
	// alone when the matcher is custom.
	enforcer *casbin.Enforcer
	roles    rbac.RoleManager
	ruleOf   map[string]int // rule.key() of a p line to its index in policy.rules
	// ruleByField maps the address of each p line's first field to the
	// line's index in policy.rules.
	ruleByField map[*string]int

	// The index, built only for DefaultModel's matcher.
	bySubject     map[string]*bucket // exact subject or role name to its p lines
	byPrefix      map[string]*bucket // subject prefix (pattern minus *) to its p lines
	prefixLengths []int              // distinct lengths of the keys of byPrefix
	domains       map[string]bool    // domains named by any p or g line
	domainIDs     nameIDs            // numbers of the domains of p lines
	actionIDs     nameIDs            // numbers of the actions of p lines
	objectIDs     map[string]uint32  // numbers of the exact objects of p lines
	// roleBuckets maps a domain (or otherDomain) and a member to the
	// buckets of every role the member holds there.
	roleBuckets map[string]map[string][]*bucket

	evaluator *lineEvaluator // nil when the matcher is custom
	boxed     [][]any        // policy.rules fields for the evaluator
	cache     *decisionCache
	logger    *slog.Logger
}

// loadSnapshot reads and validates both files and builds a snapshot. Every
// error wraps ErrInvalidPolicy and names file:line, except file read errors.
func loadSnapshot(modelPath, policyPath string, cacheSize int) (*snapshot, error) {
	modelData, err := readBounded(modelPath, maxModelBytes)
	if err != nil {
		return nil, err
	}

	mf, err := parseModel(modelPath, modelData)
	if err != nil {
		return nil, err
	}

	policyData, err := readBounded(policyPath, maxPolicyBytes)
	if err != nil {
		return nil, err
	}

	pf, problems := parsePolicy(policyPath, policyData)
	if len(problems) > 0 {
		return nil, policyError(problems)
	}
	return buildSnapshot(mf, pf, cacheSize)
}

// readBounded reads a file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("authz: read %s: %w", path, err)
	}
	defer f.Close()

	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("authz: read %s: %w", path, err)
	}

	if info.Size() > limit {
		return nil, invalid(path, 0, "file is %d bytes, larger than the limit of %d", info.Size(), limit)
	}

	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("authz: read %s: %w", path, err)
	}

	if int64(len(data)) > limit {
		return nil, invalid(path, 0, "file grew past the limit of %d bytes while being read", limit)
	}
	return data, nil
}

func buildSnapshot(mf *modelFile, pf *policyFile, cacheSize int) (*snapshot, error) {
	s := &snapshot{
		model:  mf,
		policy: pf,
		source: filepath.Base(pf.path),
		ruleOf: make(map[string]int, len(pf.rules)),

		ruleByField: make(map[*string]int, len(pf.rules)),
	}

	e, err := newCasbinEnforcer(mf)
	if err != nil {
		return nil, err
	}

	rules := make([][]string, len(pf.rules))
	for i := range pf.rules {
		r := &pf.rules[i]
		r.source = fmt.Sprintf("%s:%d", s.source, r.line)
		r.reason = "allowed by " + r.source
		if r.fields[4] == effectDeny {
			r.reason = "denied by " + r.source
		}

		rules[i] = r.fields
		s.ruleOf[r.key()] = i
		s.ruleByField[&r.fields[0]] = i
	}

	if len(rules) > 0 {
		if _, err := e.AddPolicies(rules); err != nil {
			return nil, invalid(pf.path, 0, "casbin rejected the policy lines: %v", err)
		}
	}

	roles := make([][]string, len(pf.roles))
	for i, r := range pf.roles {
		roles[i] = r.fields
	}

	if len(roles) > 0 {
		if _, err := e.AddGroupingPolicies(roles); err != nil {
			return nil, invalid(pf.path, 0, "casbin rejected the g lines: %v", err)
		}
	}

	s.enforcer = e
	s.roles = e.GetRoleManager()

	// Compile the matcher now, so a broken one is rejected at load and not at
	// the first request.
	if _, err := e.Enforce("spiffe://check.invalid/load", "load", "load", "load"); err != nil {
		return nil, invalid(mf.path, mf.matcherLine, "casbin cannot evaluate the matcher: %v", err)
	}

	if mf.indexed {
		if err := s.buildIndex(); err != nil {
			return nil, err
		}
		s.evaluator, err = newLineEvaluator(e.GetModel(), s.roles)
		if err != nil {
			return nil, invalid(mf.path, mf.matcherLine, "cannot compile the matcher: %v", err)
		}
		s.boxed = make([][]any, len(pf.rules))
		for i, r := range pf.rules {
			s.boxed[i] = boxLine(r.fields)
		}
	}

	s.cache = newDecisionCache(cacheSize)
	return s, nil
}

// newCasbinEnforcer returns an enforcer for the model with no policy, whose
// g lines match domain * against every request domain.
func newCasbinEnforcer(mf *modelFile) (*casbin.Enforcer, error) {
	e, err := casbin.NewEnforcer(mf.model.Copy())
	if err != nil {
		return nil, invalid(mf.path, 0, "casbin rejected the model: %v", err)
	}

	e.EnableAutoNotifyWatcher(false)
	e.EnableAutoSave(false)
	e.AddNamedDomainMatchingFunc("g", "keyMatch", util.KeyMatch)
	return e, nil
}

// buildIndex fills the subject index and the role closure. The index may
// select more lines than match, never fewer, because Casbin's matcher then
// evaluates the selection.
func (s *snapshot) buildIndex() error {
	s.bySubject = make(map[string]*bucket)
	s.byPrefix = make(map[string]*bucket)
	s.domains = make(map[string]bool)
	s.domainIDs, s.actionIDs = newNameIDs(), newNameIDs()
	s.objectIDs = make(map[string]uint32)

	for i, r := range s.policy.rules {
		sub, dom, obj, act := r.fields[0], r.fields[1], r.fields[2], r.fields[3]
		domID, ok1 := s.domainIDs.assign(dom)
		actID, ok2 := s.actionIDs.assign(act)
		if !ok1 || !ok2 {
			return invalid(s.policy.path, r.line, "more than %d distinct domains or actions", unknownName-1)
		}

		ref := newLineRef(i, obj, domID, actID)
		objID, ok := s.objectIDs[obj]
		if !ok && ref.kind == objectExact {
			objID = uint32(len(s.objectIDs))
			s.objectIDs[obj] = objID
		}

		if prefix, ok := strings.CutSuffix(sub, wildcard); ok {
			bucketFor(s.byPrefix, prefix).add(ref, objID)
		} else {
			bucketFor(s.bySubject, sub).add(ref, objID)
		}
		if dom != wildcard {
			s.domains[dom] = true
		}
	}

	for prefix := range s.byPrefix {
		if !slices.Contains(s.prefixLengths, len(prefix)) {
			s.prefixLengths = append(s.prefixLengths, len(prefix))
		}
	}
	slices.Sort(s.prefixLengths)

	for _, r := range s.policy.roles {
		if dom := r.fields[2]; dom != wildcard {
			s.domains[dom] = true
		}
	}

	// Register every named domain, and otherDomain, with Casbin's role
	// manager, so that a lookup finds a stored role manager for it.
	for dom := range s.domains {
		_ = s.roles.AddLink(domainAnchor, domainAnchor, dom)
	}
	_ = s.roles.AddLink(domainAnchor, domainAnchor, otherDomain)

	s.roleBuckets = make(map[string]map[string][]*bucket, len(s.domains)+1)
	for dom := range s.domains {
		s.roleBuckets[dom] = s.bucketsOfRoles(s.closeRoles(dom))
	}
	s.roleBuckets[otherDomain] = s.bucketsOfRoles(s.closeRoles(otherDomain))
	return nil
}

// bucketsOfRoles maps each member to the buckets of its roles, leaving out
// roles that no p line names.
func (s *snapshot) bucketsOfRoles(memberOf map[string][]string) map[string][]*bucket {
	out := make(map[string][]*bucket, len(memberOf))
	for member, roles := range memberOf {
		for _, role := range roles {
			if b := s.bySubject[role]; b != nil {
				out[member] = append(out[member], b)
			}
		}
	}
	return out
}

// closeRoles returns, for each member, every role it holds in dom directly
// or through other roles. Unlike Casbin it does not stop after ten levels, so
// it is a superset of what Casbin's role manager will confirm.
func (s *snapshot) closeRoles(dom string) map[string][]string {
	direct := make(map[string][]string)
	for _, r := range s.policy.roles {
		if r.fields[2] == wildcard || r.fields[2] == dom {
			direct[r.fields[0]] = append(direct[r.fields[0]], r.fields[1])
		}
	}

	closure := make(map[string][]string, len(direct))
	for member := range direct {
		seen := map[string]bool{}
		queue := slices.Clone(direct[member])
		for len(queue) > 0 {
			role := queue[0]
			queue = queue[1:]
			if seen[role] {
				continue
			}
			seen[role] = true
			closure[member] = append(closure[member], role)
			queue = append(queue, direct[role]...)
		}
	}
	return closure
}
