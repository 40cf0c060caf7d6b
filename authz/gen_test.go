package authz_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// randomPolicy is a generated policy over a fixed universe of identities,
// roles, domains and objects, with a source of requests that exercise it.
// The same seed gives the same policy and requests.
type randomPolicy struct {
	rng     *rand.Rand
	ids     []string
	roles   []string
	domains []string
	actions []string
	text    string
	pLines  [][]string
	members map[string][]string // role to its direct members
}

var randomDomains = []string{"prod", "staging", "dev", "test"}

var randomActions = []string{"issue", "renew", "revoke", "detokenize", "unmask", "connect", "read", "list"}

// newRandomPolicy returns a policy of about the given number of lines over
// 200 identities, 40 roles and 4 domains. One line in twelve is a g line (a
// tenth of those link role to role, so cycles occur). Of the p lines, 40%
// name an identity, 35% a role, 23% an identity prefix and 2% everyone; a
// fifth apply in every domain and one in seven is a deny.
func newRandomPolicy(seed uint64, lines int) *randomPolicy {
	g := &randomPolicy{
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		domains: randomDomains,
		actions: randomActions,
		members: map[string][]string{},
	}
	for ns := range 20 {
		for sa := range 10 {
			g.ids = append(g.ids, fmt.Sprintf("spiffe://ward.test/ns/ns%02d/sa/sa%02d", ns, sa))
		}
	}
	for r := range 40 {
		g.roles = append(g.roles, fmt.Sprintf("role:r%02d", r))
	}

	var b strings.Builder
	b.WriteString("# generated policy\n")
	roleLines := lines / 12
	for range roleLines {
		member := g.pick(g.ids)
		if g.rng.IntN(10) == 0 {
			member = g.pick(g.roles)
		}
		role := g.pick(g.roles)
		if role == member {
			continue
		}
		dom := g.pick(g.domains)
		if g.rng.IntN(5) == 0 {
			dom = "*"
		}
		g.members[role] = append(g.members[role], member)
		fmt.Fprintf(&b, "g, %s, %s, %s\n", member, role, dom)
	}
	for range lines - roleLines {
		fields := []string{g.subjectPattern(), g.domainPattern(), g.objectPattern(), g.actionPattern(), "allow"}
		if g.rng.IntN(7) == 0 {
			fields[4] = "deny"
		}
		g.pLines = append(g.pLines, fields)
		fmt.Fprintf(&b, "p, %s\n", strings.Join(fields, ", "))
	}
	g.text = b.String()
	return g
}

func (g *randomPolicy) pick(from []string) string { return from[g.rng.IntN(len(from))] }

func (g *randomPolicy) subjectPattern() string {
	switch n := g.rng.IntN(100); {
	case n < 40:
		return g.pick(g.ids)
	case n < 75:
		return g.pick(g.roles)
	case n < 92:
		return fmt.Sprintf("spiffe://ward.test/ns/ns%02d/*", g.rng.IntN(20))
	case n < 98:
		return fmt.Sprintf("spiffe://ward.test/ns/ns%02d/sa/sa0*", g.rng.IntN(20))
	default:
		return "*"
	}
}

func (g *randomPolicy) domainPattern() string {
	if g.rng.IntN(5) == 0 {
		return "*"
	}
	return g.pick(g.domains)
}

func (g *randomPolicy) actionPattern() string {
	if g.rng.IntN(20) == 0 {
		return "*"
	}
	return g.pick(g.actions)
}

func (g *randomPolicy) objectPattern() string {
	switch n := g.rng.IntN(100); {
	case n < 15:
		return "x509/" + g.pick(g.ids)
	case n < 22:
		return "x509/self"
	case n < 27:
		return "jwt/self"
	case n < 32:
		return fmt.Sprintf("x509/spiffe://ward.test/ns/ns%02d/*", g.rng.IntN(20))
	case n < 50:
		return fmt.Sprintf("db/db%03d", g.rng.IntN(300))
	case n < 55:
		return fmt.Sprintf("db/db%d*", g.rng.IntN(3))
	case n < 75:
		return fmt.Sprintf("column/public.t%02d.c%02d", g.rng.IntN(50), g.rng.IntN(20))
	case n < 80:
		return fmt.Sprintf("column/public.t%02d.*", g.rng.IntN(50))
	case n < 92:
		return "service/" + g.pick(g.ids)
	case n < 95:
		return "lease/" + g.pick(g.ids)
	case n < 97:
		return "policy"
	case n < 99:
		return "token"
	default:
		return "*"
	}
}

// request returns a random request. Half are built from a policy line so
// that many requests match some line; the rest are drawn at random.
func (g *randomPolicy) request() [4]string {
	sub, dom, obj, act := g.pick(g.ids), g.pick(g.domains), g.concreteObject(g.objectPattern(), ""), g.pick(g.actions)
	if g.rng.IntN(20) == 0 {
		dom = "qa" // named by no line
	}
	if g.rng.IntN(2) == 0 {
		return [4]string{sub, dom, g.concreteObject(g.objectPattern(), sub), act}
	}

	line := g.pLines[g.rng.IntN(len(g.pLines))]
	sub = g.concreteSubject(line[0])
	if line[1] != "*" {
		dom = line[1]
	}
	if line[3] != "*" {
		act = line[3]
	}
	obj = g.concreteObject(line[2], sub)
	return [4]string{sub, dom, obj, act}
}

func (g *randomPolicy) concreteSubject(pattern string) string {
	for range 8 {
		switch {
		case strings.HasPrefix(pattern, "role:"):
			members := g.members[pattern]
			if len(members) == 0 {
				return g.pick(g.ids)
			}
			pattern = members[g.rng.IntN(len(members))]
		case strings.HasSuffix(pattern, "*"):
			prefix := strings.TrimSuffix(pattern, "*")
			var matching []string
			for _, id := range g.ids {
				if strings.HasPrefix(id, prefix) {
					matching = append(matching, id)
				}
			}
			if len(matching) == 0 {
				return g.pick(g.ids)
			}
			return g.pick(matching)
		default:
			return pattern
		}
	}
	return g.pick(g.ids)
}

func (g *randomPolicy) concreteObject(pattern, sub string) string {
	switch {
	case pattern == "x509/self" && sub != "":
		return "x509/" + sub
	case pattern == "jwt/self" && sub != "":
		return "jwt/" + sub
	case strings.HasSuffix(pattern, "*"):
		return strings.TrimSuffix(pattern, "*") + fmt.Sprintf("x%d", g.rng.IntN(3))
	default:
		return pattern
	}
}
