package authz

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidPolicy is wrapped by every error that rejects a model or policy
// file. The message names the file, the line where one applies, and what is
// wrong there.
var ErrInvalidPolicy = errors.New("invalid policy")

// Limits on untrusted input. A policy of 10,000 lines is about 1 MiB, so the
// file limit leaves ample room while keeping a runaway file from being read.
const (
	maxPolicyBytes = 32 << 20
	maxModelBytes  = 64 << 10
	maxLineBytes   = 16 << 10
	maxFieldBytes  = 4096
)

// Policy line types and effects, as written in the policy file.
const (
	ptypePolicy = "p"
	ptypeRole   = "g"
	effectAllow = "allow"
	effectDeny  = "deny"
	wildcard    = "*"
	rolePrefix  = "role:"
	selfX509    = "x509/self"
	selfJWT     = "jwt/self"
)

// knownActions are the verbs ward's components ask about. An action outside
// this list is accepted by the loader (a new component may add verbs) but
// reported by Lint, because a misspelt verb makes a line that never matches.
var knownActions = map[string]bool{
	"issue": true, "renew": true, "revoke": true, "list": true,
	"read": true, "write": true, "create": true, "delete": true,
	"tokenize": true, "detokenize": true, "mask": true, "unmask": true,
	"connect": true, "reload": true, "check": true,
	"quarantine": true, "release": true, wildcard: true,
}

// rule is one policy line. For ptype "p" the fields are subject, domain,
// object, action and effect; for ptype "g" they are member, role and domain.
type rule struct {
	ptype  string
	fields []string
	line   int
	text   string // the line as written, without surrounding spaces

	// Filled in by buildSnapshot for p lines: "file:line" with the file's
	// base name, and the Decision.Reason for a decision made by this line.
	source string
	reason string
}

// key identifies a rule by content. Casbin drops a line equal to an earlier
// one, and so does the loader.
func (r rule) key() string {
	return r.ptype + "\x00" + strings.Join(r.fields, "\x00")
}

// policyFile is a parsed and validated policy file.
type policyFile struct {
	path  string
	rules []rule // p lines, in file order, duplicates removed
	roles []rule // g lines, in file order, duplicates removed
	lines int    // number of policy lines read, including duplicates

	// duplicates maps the line number of each repeated line to the line
	// that first had the same content.
	duplicates map[int]int
}

// lineError is one problem found at path:line.
type lineError struct {
	path string
	line int
	msg  string
}

// source returns "path:line", or the path alone for a whole-file problem.
func (e lineError) source() string {
	if e.line <= 0 {
		return e.path
	}
	return fmt.Sprintf("%s:%d", e.path, e.line)
}

func (e lineError) Error() string {
	return e.source() + ": " + e.msg + ": " + ErrInvalidPolicy.Error()
}

func (e lineError) Unwrap() error { return ErrInvalidPolicy }

// invalid returns an error wrapping ErrInvalidPolicy for path:line; line 0
// means the whole file.
func invalid(path string, line int, format string, args ...any) error {
	return lineError{path: path, line: line, msg: fmt.Sprintf(format, args...)}
}

// parsePolicy parses the policy text read from path. It returns every problem
// found, in file order; the policy is usable only when none are returned.
func parsePolicy(path string, data []byte) (*policyFile, []lineError) {
	pf := &policyFile{path: path, duplicates: make(map[int]int)}
	var problems []lineError
	report := func(line int, format string, args ...any) {
		problems = append(problems, lineError{path: path, line: line, msg: fmt.Sprintf(format, args...)})
	}

	if len(data) > maxPolicyBytes {
		report(0, "file is larger than %d bytes", maxPolicyBytes)
		return nil, problems
	}

	if !utf8.Valid(data) {
		report(0, "file is not valid UTF-8")
		return nil, problems
	}

	firstLine := make(map[string]int)
	for number, raw := range strings.Split(string(data), "\n") {
		line := number + 1
		text := strings.TrimSpace(raw)
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}

		if len(text) > maxLineBytes {
			report(line, "line is longer than %d bytes", maxLineBytes)
			continue
		}

		fields, err := splitCSV(text)
		if err != nil {
			report(line, "%v", err)
			continue
		}

		r := rule{ptype: fields[0], fields: fields[1:], line: line, text: text}
		if msg := validateRule(r); msg != "" {
			report(line, "%s", msg)
			continue
		}

		pf.lines++
		if first, dup := firstLine[r.key()]; dup {
			pf.duplicates[line] = first
			continue
		}
		firstLine[r.key()] = line

		if r.ptype == ptypePolicy {
			pf.rules = append(pf.rules, r)
		} else {
			pf.roles = append(pf.roles, r)
		}
	}

	if len(problems) > 0 {
		return nil, problems
	}
	return pf, nil
}

// splitCSV splits one line into fields the way Casbin's file adapter reads
// it: comma separated, spaces around a field ignored, a field may be quoted
// with double quotes, and "" inside quotes is one literal quote.
func splitCSV(text string) ([]string, error) {
	var fields []string
	i := 0
	for {
		for i < len(text) && (text[i] == ' ' || text[i] == '\t') {
			i++
		}

		var field strings.Builder
		if i < len(text) && text[i] == '"' {
			i++
			closed := false
			for i < len(text) {
				if text[i] != '"' {
					field.WriteByte(text[i])
					i++
					continue
				}
				if i+1 < len(text) && text[i+1] == '"' {
					field.WriteByte('"')
					i += 2
					continue
				}
				i++
				closed = true
				break
			}
			if !closed {
				return nil, fmt.Errorf("field %d: missing closing quote", len(fields)+1)
			}
			for i < len(text) && (text[i] == ' ' || text[i] == '\t') {
				i++
			}
			if i < len(text) && text[i] != ',' {
				return nil, fmt.Errorf("field %d: unexpected %q after closing quote", len(fields)+1, text[i])
			}
		} else {
			start := i
			for i < len(text) && text[i] != ',' {
				if text[i] == '"' {
					return nil, fmt.Errorf("field %d: quote inside an unquoted field", len(fields)+1)
				}
				i++
			}
			field.WriteString(strings.TrimRight(text[start:i], " \t"))
		}

		fields = append(fields, field.String())
		if i >= len(text) {
			return fields, nil
		}
		i++ // the comma
	}
}

// validateRule returns what is wrong with r, or "" when it is valid.
func validateRule(r rule) string {
	switch r.ptype {
	case ptypePolicy:
		if len(r.fields) != 5 {
			return fmt.Sprintf("p line has %d fields, want 5: p, subject, domain, object, action, effect", len(r.fields))
		}
	case ptypeRole:
		if len(r.fields) != 3 {
			return fmt.Sprintf("g line has %d fields, want 3: g, member, role:<name>, domain", len(r.fields))
		}
	default:
		return fmt.Sprintf("unknown line type %q, want p or g", r.ptype)
	}

	names := [...]string{"subject", "domain", "object", "action", "effect"}
	if r.ptype == ptypeRole {
		names = [...]string{"member", "role", "domain", "", ""}
	}
	for i, f := range r.fields {
		if msg := validateField(names[i], f); msg != "" {
			return msg
		}
	}

	if r.ptype == ptypeRole {
		return validateRoleRule(r.fields[0], r.fields[1], r.fields[2])
	}
	return validatePolicyRule(r.fields[0], r.fields[1], r.fields[2], r.fields[3], r.fields[4])
}

func validateField(name, value string) string {
	if value == "" {
		return fmt.Sprintf("%s is empty", name)
	}

	if len(value) > maxFieldBytes {
		return fmt.Sprintf("%s is longer than %d bytes", name, maxFieldBytes)
	}

	for _, c := range value {
		if unicode.IsSpace(c) || unicode.IsControl(c) {
			return fmt.Sprintf("%s %q contains a space or control character", name, value)
		}
	}
	return ""
}

func validatePolicyRule(sub, dom, obj, act, eft string) string {
	if strings.HasPrefix(sub, rolePrefix) {
		if msg := validateRoleName("subject", sub); msg != "" {
			return msg
		}
	} else if msg := validatePattern("subject", sub); msg != "" {
		return msg
	}

	if msg := validateExact("domain", dom); msg != "" {
		return msg
	}

	if msg := validatePattern("object", obj); msg != "" {
		return msg
	}

	if msg := validateExact("action", act); msg != "" {
		return msg
	}

	if eft != effectAllow && eft != effectDeny {
		return fmt.Sprintf("effect %q is not allow or deny", eft)
	}
	return ""
}

func validateRoleRule(member, role, dom string) string {
	if strings.HasPrefix(member, rolePrefix) {
		if msg := validateRoleName("member", member); msg != "" {
			return msg
		}
	} else if strings.Contains(member, wildcard) {
		return fmt.Sprintf("member %q contains *, but g lines assign roles to exact identities", member)
	}

	if !strings.HasPrefix(role, rolePrefix) {
		return fmt.Sprintf("role %q does not start with %q", role, rolePrefix)
	}

	if msg := validateRoleName("role", role); msg != "" {
		return msg
	}
	return validateExact("domain", dom)
}

func validateRoleName(name, value string) string {
	if value == rolePrefix {
		return fmt.Sprintf("%s %q has no name after %q", name, value, rolePrefix)
	}

	if strings.Contains(value, wildcard) {
		return fmt.Sprintf("%s %q contains *, which role names cannot", name, value)
	}
	return ""
}

// validatePattern accepts an exact value or a prefix pattern ending in *.
// Casbin's keyMatch ignores everything after the first *, so a * elsewhere
// would match more than the line appears to allow.
func validatePattern(name, value string) string {
	if i := strings.Index(value, wildcard); i >= 0 && i != len(value)-1 {
		return fmt.Sprintf("%s %q has * before its end, but * is allowed only as the last character", name, value)
	}
	return ""
}

// validateExact accepts "*" or a value without *.
func validateExact(name, value string) string {
	if value != wildcard && strings.Contains(value, wildcard) {
		return fmt.Sprintf("%s %q contains *, but it must be * alone or a name without *", name, value)
	}
	return ""
}

// policyError turns the problems from parsePolicy into one error wrapping
// ErrInvalidPolicy. It names the first problem and counts the rest.
func policyError(problems []lineError) error {
	first := problems[0]
	switch n := len(problems) - 1; {
	case n == 1:
		first.msg += " (1 more problem; run ward policy lint to list all)"
	case n > 1:
		first.msg += fmt.Sprintf(" (%d more problems; run ward policy lint to list all)", n)
	}
	return first
}
