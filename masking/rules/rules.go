// Package rules reads masking rules from YAML and compiles them, with the
// database catalog, into per-table maskers.
//
// A rules file names, for each schema.table.column, the transformer that
// masks it, with parameters. Rules may also reach inside json/jsonb columns
// (a dotted path) and into the elements of array columns. Columns no rule
// names get the file's default: keep, mask (redact) or null. With strict,
// compiling fails while any column of the catalog has no rule.
//
// Each column is the Casbin object column/<schema>.<table>.<column>, the
// object the masking proxy and the unmask permission use.
//
// Security contract: compiling fails closed. An unknown transformer, a bad
// parameter, a missing key, a rule that would break a foreign key, or a
// non-injective transformer on a UNIQUE column is an error naming file:line,
// and no masker is returned. This package never logs values.
package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Sentinel errors for callers that branch on the cause.
var (
	// ErrSyntax means the rules file is not valid YAML or has the wrong shape.
	ErrSyntax = errors.New("invalid rules file")
	// ErrUnclassified means strict mode found columns without a rule.
	ErrUnclassified = errors.New("unclassified columns")
	// ErrConflict means two rules disagree, for example across a foreign key.
	ErrConflict = errors.New("conflicting rules")
)

// MaxFileSize bounds a rules file.
const MaxFileSize = 4 << 20

// Default is the treatment of columns that no rule names.
type Default string

// Defaults for unnamed columns.
const (
	DefaultKeep Default = "keep"
	DefaultMask Default = "mask" // redact on text columns, NULL on others
	DefaultNull Default = "null"
)

// KeepTransformer is the rule value that keeps a column as it is. It counts
// as a classification in strict mode.
const KeepTransformer = "keep"

// Column names one column.
type Column struct {
	Schema, Table, Name string
}

// String returns schema.table.column.
func (c Column) String() string { return c.Schema + "." + c.Table + "." + c.Name }

// Object returns the Casbin object of the column, column/<schema>.<table>.<column>.
func (c Column) Object() string { return "column/" + c.String() }

// TableName returns schema.table.
func (c Column) TableName() string { return c.Schema + "." + c.Table }

// ParseColumn parses schema.table.column. Quoted identifiers are not
// supported, so none of the three names may contain a dot.
func ParseColumn(s string) (Column, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || slices.Contains(parts, "") {
		return Column{}, fmt.Errorf("column %q is not schema.table.column", s)
	}
	return Column{parts[0], parts[1], parts[2]}, nil
}

// Rule masks one column, or one JSON path or the elements inside it.
type Rule struct {
	Column      Column
	Transformer string
	Params      map[string]string
	// JSONPath, when set, names a value inside a json or jsonb column as
	// dotted keys. A key ending in "[]" walks every element of an array.
	JSONPath string
	// Elements applies the transformer to each element of an array column.
	Elements bool
	// Entity names a column of the same table whose value keys the
	// transformer, so date-shift moves all dates of one entity alike.
	Entity string
	// Line is the rule's line in File; Derived names the rule it was copied
	// from across a foreign key, or is empty.
	File    string
	Line    int
	Derived string
	origin  *Rule // the rule a derived rule copies
}

func (r *Rule) whole() bool { return r.JSONPath == "" && !r.Elements }

// Pos returns file:line of the rule.
func (r *Rule) Pos() string { return fmt.Sprintf("%s:%d", r.File, r.Line) }

// Ruleset is a parsed rules file. It is not modified after Parse and is
// safe for concurrent reads.
type Ruleset struct {
	File    string
	Default Default
	Strict  bool
	Rules   []*Rule
}

// Rule returns the rule on the whole of col (not a json path or array
// elements), as the tokenize API and CLI look it up.
func (rs *Ruleset) Rule(col Column) (*Rule, bool) {
	for _, r := range rs.Rules {
		if r.Column == col && r.whole() {
			return r, true
		}
	}
	return nil, false
}

// Load reads and parses the rules file at path.
func Load(path string) (*Ruleset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrSyntax, path, MaxFileSize)
	}
	return Parse(path, data)
}

// yamlLineRe splits yaml.v3's "line N: message" so errors read file:N.
var yamlLineRe = regexp.MustCompile(`^line (\d+): (.*)$`)

// Parse parses a rules file; file names it in errors.
func Parse(file string, data []byte) (*Ruleset, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %s: empty file", ErrSyntax, file)
		}
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
			return nil, fmt.Errorf("%w: %s:%s: %s", ErrSyntax, file, m[1], m[2])
		}
		return nil, fmt.Errorf("%w: %s: %s", ErrSyntax, file, msg)
	}
	rs := &Ruleset{File: file, Default: DefaultKeep}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, posErr(file, root, "want a mapping with default, strict and columns")
	}

	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if seen[k.Value] {
			return nil, posErr(file, k, "%s repeated", k.Value)
		}
		seen[k.Value] = true
		switch k.Value {
		case "version":
			if v.Value != "1" {
				return nil, posErr(file, v, "version %q is not supported, want 1", v.Value)
			}
		case "default":
			d := Default(v.Value)
			if d != DefaultKeep && d != DefaultMask && d != DefaultNull {
				return nil, posErr(file, v, "default %q is invalid, want keep, mask or null", v.Value)
			}
			rs.Default = d
		case "strict":
			if v.Kind != yaml.ScalarNode || (v.Value != "true" && v.Value != "false") {
				return nil, posErr(file, v, "strict must be true or false")
			}
			rs.Strict = v.Value == "true"
		case "columns":
			if err := rs.parseColumns(v); err != nil {
				return nil, err
			}
		default:
			return nil, posErr(file, k, "unknown key %q (known: version, default, strict, columns)", k.Value)
		}
	}
	return rs, nil
}

func posErr(file string, n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("%w: %s:%d: %s", ErrSyntax, file, n.Line, fmt.Sprintf(format, args...))
}

func (rs *Ruleset) parseColumns(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return posErr(rs.File, n, "columns must be a mapping of schema.table.column to rules")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		col, err := ParseColumn(k.Value)
		if err != nil {
			return posErr(rs.File, k, "%v", err)
		}
		switch v.Kind {
		case yaml.ScalarNode:
			// A bare null is YAML's null, which here names the null
			// transformer; an empty value or ~ names nothing.
			if v.Value == "" || v.Value == "~" {
				return posErr(rs.File, k, "rule for %s has no transformer", col)
			}
			rs.Rules = append(rs.Rules, &Rule{Column: col, Transformer: v.Value, File: rs.File, Line: k.Line})
		case yaml.MappingNode:
			r, err := rs.parseRule(col, v)
			if err != nil {
				return err
			}
			r.Line = k.Line
			rs.Rules = append(rs.Rules, r)
		case yaml.SequenceNode:
			for _, item := range v.Content {
				r, err := rs.parseRule(col, item)
				if err != nil {
					return err
				}
				if r.JSONPath == "" && !r.Elements {
					return posErr(rs.File, item, "a list of rules for one column needs json or elements in each")
				}
				rs.Rules = append(rs.Rules, r)
			}
		default:
			return posErr(rs.File, v, "rule for %s must be a transformer name, a mapping or a list", col)
		}
	}
	for i, a := range rs.Rules {
		for _, b := range rs.Rules[:i] {
			if a.Column != b.Column {
				continue
			}
			// A rule on the whole column would hide rules on its parts.
			if a.JSONPath == b.JSONPath && a.Elements == b.Elements || a.whole() || b.whole() {
				return fmt.Errorf("%w: %s: %s already has a rule at line %d", ErrSyntax, a.Pos(), a.Column, b.Line)
			}
		}
	}
	return nil
}

func (rs *Ruleset) parseRule(col Column, n *yaml.Node) (*Rule, error) {
	if n.Kind != yaml.MappingNode {
		return nil, posErr(rs.File, n, "rule for %s must be a mapping", col)
	}
	r := &Rule{Column: col, Params: map[string]string{}, File: rs.File, Line: n.Line}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			return nil, posErr(rs.File, v, "%s must be a single value", k.Value)
		}
		if _, dup := r.Params[k.Value]; dup {
			return nil, posErr(rs.File, k, "%s repeated", k.Value)
		}
		switch k.Value {
		case "transformer":
			r.Transformer = v.Value
		case "json":
			r.JSONPath = v.Value
		case "elements":
			if v.Value != "true" && v.Value != "false" {
				return nil, posErr(rs.File, v, "elements must be true or false")
			}
			r.Elements = v.Value == "true"
		case "entity":
			r.Entity = v.Value
		default:
			r.Params[k.Value] = v.Value
		}
	}
	if r.Transformer == "" {
		return nil, posErr(rs.File, n, "rule for %s has no transformer", col)
	}
	return r, nil
}
