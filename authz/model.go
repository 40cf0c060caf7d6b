package authz

import (
	"strings"

	"github.com/casbin/casbin/v2/model"
)

// DefaultModel is the Casbin model ward writes for new installations: RBAC
// with domains, deny by default and explicit deny wins.
//
// The matcher tests the cheap equality conditions first, so Casbin's
// short-circuit evaluation skips the role lookup for most lines.
// keyMatch(r.sub, p.sub) lets a line name a SPIFFE ID prefix such as
// spiffe://example.org/ns/shop/*. The object x509/self (and jwt/self) matches
// x509/<subject>, so one line lets every matching workload obtain its own
// certificate and no other workload's.
const DefaultModel = `# ward authorization model: RBAC with domains, deny by default, deny wins.
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act, eft

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = (p.act == "*" || r.act == p.act) && (p.dom == "*" || r.dom == p.dom) && (keyMatch(r.obj, p.obj) || (p.obj == "x509/self" && r.obj == "x509/" + r.sub) || (p.obj == "jwt/self" && r.obj == "jwt/" + r.sub)) && (keyMatch(r.sub, p.sub) || g(r.sub, p.sub, r.dom))
`

// The definitions every ward model must keep, because the loader validates
// policy lines and builds requests in exactly these shapes. Only the matcher
// may differ from DefaultModel.
var requiredDefinitions = []struct{ section, key, value string }{
	{"request_definition", "r", "sub, dom, obj, act"},
	{"policy_definition", "p", "sub, dom, obj, act, eft"},
	{"role_definition", "g", "_, _, _"},
	{"policy_effect", "e", "some(where (p.eft == allow)) && !some(where (p.eft == deny))"},
	{"matchers", "m", ""},
}

// modelFile is a parsed and validated model file.
type modelFile struct {
	path        string
	text        string
	model       model.Model // Casbin's parse, with no policy loaded
	matcherLine int
	// indexed is true when the matcher is DefaultModel's, so the index may
	// choose which lines to evaluate. Other matchers evaluate every line.
	indexed bool
}

// modelKey is one "key = value" line of a model file.
type modelKey struct {
	value string
	line  int
}

// parseModel checks the model text read from path and parses it with Casbin.
// Casbin's own errors carry no line number, so the sections and keys are
// scanned here first.
func parseModel(path string, data []byte) (*modelFile, error) {
	if len(data) > maxModelBytes {
		return nil, invalid(path, 0, "file is larger than %d bytes", maxModelBytes)
	}

	keys, err := scanModel(path, string(data))
	if err != nil {
		return nil, err
	}

	for _, want := range requiredDefinitions {
		got, ok := keys[want.section+"."+want.key]
		if !ok {
			return nil, invalid(path, 0, "missing %q in section [%s]", want.key+" = ...", want.section)
		}
		if want.value != "" && compact(got.value) != compact(want.value) {
			return nil, invalid(path, got.line, "%s = %s, want %s = %s", want.key, got.value, want.key, want.value)
		}
	}

	m, err := model.NewModelFromString(string(data))
	if err != nil {
		return nil, invalid(path, 0, "casbin rejected the model: %v", err)
	}

	matcher := keys["matchers.m"]
	return &modelFile{
		path:        path,
		text:        string(data),
		model:       m,
		matcherLine: matcher.line,
		indexed:     compact(matcher.value) == compact(defaultMatcher()),
	}, nil
}

// scanModel reads the INI layout of a Casbin model file and returns its keys
// as "section.key" with their line numbers. It accepts what Casbin's config
// reader accepts: # and ; comments, and a trailing \ continuing a line.
func scanModel(path, text string) (map[string]modelKey, error) {
	keys := make(map[string]modelKey)
	section := ""
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		number := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}

		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") || len(line) < 3 {
				return nil, invalid(path, number, "section header %q is missing its closing ]", line)
			}
			section = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}

		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, `\`) + strings.TrimSpace(lines[i])
		}

		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, invalid(path, number, "%q is not a key = value line", line)
		}

		if section == "" {
			return nil, invalid(path, number, "%q comes before any [section]", line)
		}

		name := section + "." + strings.TrimSpace(key)
		if previous, dup := keys[name]; dup {
			return nil, invalid(path, number, "%s is already defined at line %d", strings.TrimSpace(key), previous.line)
		}
		keys[name] = modelKey{value: strings.TrimSpace(value), line: number}
	}
	return keys, nil
}

// defaultMatcher returns the value of m in DefaultModel.
func defaultMatcher() string {
	for _, line := range strings.Split(DefaultModel, "\n") {
		if value, ok := strings.CutPrefix(line, "m = "); ok {
			return value
		}
	}
	panic("authz: DefaultModel has no matcher")
}

// compact removes all white space, so definitions compare by content.
func compact(s string) string {
	return strings.Join(strings.Fields(s), "")
}
