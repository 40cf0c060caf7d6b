package authz

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Finding is one problem Lint found.
type Finding struct {
	Source  string `json:"source"` // "file:line", or the file alone for a whole-file problem
	Message string `json:"message"`
}

// maxRoleDepth is the depth at which Casbin's default role manager stops
// following role inheritance: Casbin v2.135.0 creates its role managers with
// NewRoleManager(10).
const maxRoleDepth = 10

// Lint checks the model and policy files and returns every finding, sorted
// by file and line. An empty result means the files are clean. Besides the
// problems that make New and Reload reject the files, Lint reports lines
// that load but are likely mistakes:
//   - unknown action verbs and duplicate lines,
//   - a deny made redundant by a broader deny,
//   - an allow that a deny always overrides,
//   - lines for roles that no identity holds,
//   - cycles in role inheritance and role chains deeper than Casbin follows.
func Lint(modelPath, policyPath string) []Finding {
	var findings []Finding
	addErr := func(path string, err error) {
		var le lineError
		if errors.As(err, &le) {
			findings = append(findings, Finding{Source: le.source(), Message: le.msg})
			return
		}
		findings = append(findings, Finding{Source: path, Message: err.Error()})
	}

	var mf *modelFile
	modelData, err := readBounded(modelPath, maxModelBytes)
	if err == nil {
		mf, err = parseModel(modelPath, modelData)
	}
	if err != nil {
		addErr(modelPath, err)
	}

	policyData, err := readBounded(policyPath, maxPolicyBytes)
	if err != nil {
		addErr(policyPath, err)
		return sortFindings(findings, modelPath)
	}

	pf, problems := parsePolicy(policyPath, policyData)
	for _, p := range problems {
		findings = append(findings, Finding{Source: p.source(), Message: p.msg})
	}
	if pf == nil {
		return sortFindings(findings, modelPath)
	}

	// Casbin itself checks the matcher when the snapshot is built.
	if mf != nil {
		if _, err := buildSnapshot(mf, pf, 0); err != nil {
			addErr(modelPath, err)
		}
	}

	findings = append(findings, lintPolicy(pf)...)
	return sortFindings(findings, modelPath)
}

// sortFindings orders findings with the model file first, then by line.
func sortFindings(findings []Finding, modelPath string) []Finding {
	type key struct {
		model bool
		file  string
		line  int
	}
	keyOf := func(f Finding) key {
		file, line := f.Source, 0
		if i := strings.LastIndexByte(f.Source, ':'); i >= 0 {
			if _, err := fmt.Sscanf(f.Source[i+1:], "%d", &line); err == nil {
				file = f.Source[:i]
			}
		}
		return key{model: file == modelPath, file: file, line: line}
	}
	slices.SortStableFunc(findings, func(a, b Finding) int {
		ka, kb := keyOf(a), keyOf(b)
		if ka.model != kb.model {
			if ka.model {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(ka.file, kb.file), cmp.Compare(ka.line, kb.line))
	})
	return findings
}

// lintPolicy returns the findings about a policy that loads.
func lintPolicy(pf *policyFile) []Finding {
	var findings []Finding
	add := func(line int, format string, args ...any) {
		findings = append(findings, Finding{Source: fmt.Sprintf("%s:%d", pf.path, line), Message: fmt.Sprintf(format, args...)})
	}

	for line, first := range pf.duplicates {
		add(line, "duplicate of line %d; Casbin keeps only the first", first)
	}

	for _, r := range pf.rules {
		if !knownActions[r.fields[3]] {
			add(r.line, "action %q is not a known verb (%s); a misspelt verb makes a line that never matches", r.fields[3], knownVerbList())
		}
	}

	held := heldRoles(pf.roles)
	for _, r := range pf.rules {
		if sub := r.fields[0]; strings.HasPrefix(sub, rolePrefix) && !held[sub] {
			add(r.line, "no identity holds %s (no g line assigns it), so this line never matches", sub)
		}
	}
	for _, r := range pf.roles {
		if role := r.fields[0]; strings.HasPrefix(role, rolePrefix) && !held[role] {
			add(r.line, "no identity holds %s, so this g line gives no identity %s", role, r.fields[1])
		}
	}

	// Denies are grouped by subject, so each line is compared only with the
	// denies that can cover its subject: same subject, or a pattern.
	denyBySubject := make(map[string][]rule)
	var denyPatterns []rule
	for _, r := range pf.rules {
		switch {
		case r.fields[4] != effectDeny:
		case strings.HasSuffix(r.fields[0], wildcard):
			denyPatterns = append(denyPatterns, r)
		default:
			denyBySubject[r.fields[0]] = append(denyBySubject[r.fields[0]], r)
		}
	}
	for _, r := range pf.rules {
		cover := 0 // line of the first deny that covers r
		for _, group := range [][]rule{denyBySubject[r.fields[0]], denyPatterns} {
			for _, d := range group {
				if d.line != r.line && (cover == 0 || d.line < cover) && covers(d.fields, r.fields) {
					cover = d.line
				}
			}
		}

		switch {
		case cover == 0:
		case r.fields[4] == effectDeny:
			add(r.line, "deny is redundant: the deny at line %d already covers every request it matches", cover)
		default:
			add(r.line, "allow never takes effect: the deny at line %d matches every request it matches, and deny wins", cover)
		}
	}

	for _, c := range roleCycles(pf.roles) {
		add(c.line, "role cycle: %s", strings.Join(c.path, " -> "))
	}
	for _, d := range deepRoles(pf.roles) {
		add(d.line, "role chain from %s is deeper than %d levels, the depth at which Casbin stops following roles", d.member, maxRoleDepth)
	}
	return findings
}

func knownVerbList() string {
	var verbs []string
	for v := range knownActions {
		if v != wildcard {
			verbs = append(verbs, v)
		}
	}
	slices.Sort(verbs)
	return strings.Join(verbs, " ") + " or *"
}

// heldRoles returns the roles some identity holds, directly or through
// other roles, in some domain.
func heldRoles(roles []rule) map[string]bool {
	held := make(map[string]bool)
	changed := true
	for changed {
		changed = false
		for _, r := range roles {
			member, role := r.fields[0], r.fields[1]
			if held[role] {
				continue
			}
			if !strings.HasPrefix(member, rolePrefix) || held[member] {
				held[role] = true
				changed = true
			}
		}
	}
	return held
}

// covers reports whether every request matching p line b also matches p
// line a. It errs toward false: roles cover only themselves.
func covers(a, b []string) bool {
	return coversSubject(a[0], b[0]) &&
		(a[1] == wildcard || a[1] == b[1]) &&
		coversObject(a[2], b[2]) &&
		(a[3] == wildcard || a[3] == b[3])
}

func coversSubject(a, b string) bool {
	if a == b || a == wildcard {
		return true
	}

	prefix, ok := strings.CutSuffix(a, wildcard)
	if !ok || strings.HasPrefix(b, rolePrefix) {
		return false
	}
	return strings.HasPrefix(strings.TrimSuffix(b, wildcard), prefix)
}

func coversObject(a, b string) bool {
	if a == b {
		return true
	}

	prefix, ok := strings.CutSuffix(a, wildcard)
	if !ok {
		return false
	}

	// x509/self matches the object x509/self and x509/<subject>, both under
	// the prefix x509/, and likewise jwt/self.
	switch b {
	case selfX509:
		b = "x509/"
	case selfJWT:
		b = "jwt/"
	}
	return strings.HasPrefix(strings.TrimSuffix(b, wildcard), prefix)
}

type roleCycle struct {
	line int
	path []string
}

// roleEdges returns, for one domain, each member's roles and the g line of
// each edge. Domain * edges apply in every domain.
func roleEdges(roles []rule, dom string) map[string][]rule {
	edges := make(map[string][]rule)
	for _, r := range roles {
		if r.fields[2] == wildcard || r.fields[2] == dom {
			edges[r.fields[0]] = append(edges[r.fields[0]], r)
		}
	}
	return edges
}

func roleDomains(roles []rule) []string {
	domains := []string{wildcard}
	for _, r := range roles {
		if !slices.Contains(domains, r.fields[2]) {
			domains = append(domains, r.fields[2])
		}
	}
	return domains
}

// roleCycles returns each cycle of role inheritance once, at the first g
// line on it.
func roleCycles(roles []rule) []roleCycle {
	var cycles []roleCycle
	reported := make(map[string]bool)
	for _, dom := range roleDomains(roles) {
		edges := roleEdges(roles, dom)
		state := make(map[string]int) // 0 new, 1 on the current path, 2 done
		var path []rule
		var visit func(node string)
		visit = func(node string) {
			state[node] = 1
			for _, e := range edges[node] {
				next := e.fields[1]
				path = append(path, e)
				switch state[next] {
				case 0:
					visit(next)
				case 1:
					cycles = appendCycle(cycles, reported, path, next)
				}
				path = path[:len(path)-1]
			}
			state[node] = 2
		}
		for _, r := range roles {
			if state[r.fields[0]] == 0 {
				visit(r.fields[0])
			}
		}
	}
	return cycles
}

// appendCycle adds the cycle at the end of path that returns to start,
// unless the same set of g lines was reported already.
func appendCycle(cycles []roleCycle, reported map[string]bool, path []rule, start string) []roleCycle {
	i := len(path) - 1
	for i > 0 && path[i].fields[0] != start {
		i--
	}
	loop := path[i:]

	lines := make([]int, len(loop))
	names := []string{start}
	for j, e := range loop {
		lines[j] = e.line
		names = append(names, e.fields[1])
	}
	slices.Sort(lines)
	key := fmt.Sprint(lines)
	if reported[key] {
		return cycles
	}
	reported[key] = true
	return append(cycles, roleCycle{line: lines[0], path: names})
}

type deepRole struct {
	line   int
	member string
}

// deepRoles returns the identities holding a role that Casbin's role
// manager does not reach: Casbin follows inheritance level by level and stops
// after maxRoleDepth levels, so a role whose shortest chain is longer does
// not apply.
func deepRoles(roles []rule) []deepRole {
	var found []deepRole
	reported := make(map[string]bool)
	for _, dom := range roleDomains(roles) {
		edges := roleEdges(roles, dom)

		// Identities with the same direct roles have the same chains, and
		// large policies give many identities the same few roles.
		depthOf := make(map[string]int)
		for _, r := range roles {
			member := r.fields[0]
			if strings.HasPrefix(member, rolePrefix) || reported[member] {
				continue
			}

			var direct []string
			for _, e := range edges[member] {
				direct = append(direct, e.fields[1])
			}
			slices.Sort(direct)
			key := strings.Join(direct, "\x00")
			depth, ok := depthOf[key]
			if !ok {
				depth = shortestChains(edges, member)
				depthOf[key] = depth
			}

			if depth > maxRoleDepth {
				reported[member] = true
				found = append(found, deepRole{line: r.line, member: member})
			}
		}
	}
	return found
}

// shortestChains returns the largest, over the roles reachable from member,
// of the number of links on the shortest chain to that role.
func shortestChains(edges map[string][]rule, member string) int {
	seen := map[string]bool{member: true}
	level := []string{member}
	depth := 0
	for len(level) > 0 {
		var next []string
		for _, node := range level {
			for _, e := range edges[node] {
				if role := e.fields[1]; !seen[role] {
					seen[role] = true
					next = append(next, role)
				}
			}
		}
		if len(next) > 0 {
			depth++
		}
		level = next
	}
	return depth
}
