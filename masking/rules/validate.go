package rules

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"ward.dev/ward/masking/transform"
)

// Finding is one problem Validate found.
type Finding struct {
	Pos     string `json:"pos"` // file:line of the rule, or the file for a column without a rule
	Column  string `json:"column"`
	Problem string `json:"problem"`
}

// String returns "pos: column: problem", or "pos: problem" without a column.
func (f Finding) String() string {
	if f.Column == "" {
		return f.Pos + ": " + f.Problem
	}
	return f.Pos + ": " + f.Column + ": " + f.Problem
}

// Validate checks rs against catalog and returns every problem, sorted by
// line. It reports rules on tables or columns the catalog lacks (schema
// drift), unknown transformers and bad parameters, and transformers that
// cannot produce the column's type or length. It also reports null on NOT
// NULL columns, non-injective transformers on UNIQUE columns, json and
// elements rules on columns that are not json or arrays, and, with strict
// in the call or the file, columns no rule classifies.
func Validate(rs *Ruleset, catalog *Catalog, keys *transform.Keys, strict bool) []Finding {
	var out []Finding
	add := func(pos string, col Column, format string, args ...any) {
		out = append(out, Finding{Pos: pos, Column: col.String(), Problem: fmt.Sprintf(format, args...)})
	}

	rules, err := propagate(rs.Rules, catalog)
	if err != nil {
		out = append(out, Finding{Pos: rs.File, Problem: err.Error()})
		rules = rs.Rules
	}
	classified := map[Column]bool{}
	for _, r := range rules {
		classified[r.Column] = true
		pos := r.Pos()
		if r.Derived != "" {
			pos = r.Derived
		}
		ci, ok := catalog.Lookup(r.Column)
		if !ok {
			if !catalog.HasTable(r.Column.TableName()) {
				add(pos, r.Column, "table %s not found in the database", r.Column.TableName())
			} else {
				add(pos, r.Column, "column not found in table %s", r.Column.TableName())
			}
			continue
		}
		if r.Transformer == KeepTransformer {
			continue
		}
		validateRule(r, ci, keys, func(format string, args ...any) { add(pos, r.Column, format, args...) })
	}

	if strict || rs.Strict {
		for _, cols := range catalog.Tables {
			for _, ci := range cols {
				if !classified[ci.Column] && !classified[catalog.rootColumn(ci.Column)] {
					add(rs.File, ci.Column, "no rule classifies this column (strict)")
				}
			}
		}
	}
	if rs.Default != DefaultKeep {
		for _, cols := range catalog.Tables {
			for _, ci := range cols {
				if classified[ci.Column] || classified[catalog.rootColumn(ci.Column)] {
					continue
				}
				if rs.Default == DefaultNull && ci.NotNull {
					add(rs.File, ci.Column, "default null on a NOT NULL column")
				}
				if rs.Default == DefaultMask && !maskableByRedact(ci) && ci.NotNull {
					add(rs.File, ci.Column, "default mask sets NULL in this NOT NULL %s column, because redact writes text", ci.Type)
				}
			}
		}
	}

	sort.SliceStable(out, func(i, j int) bool { return posLine(out[i].Pos) < posLine(out[j].Pos) })
	return out
}

// posLine returns the line number in "file:line ...", or a number past
// every line for findings that name only the file, so they sort last.
func posLine(pos string) int {
	_, rest, ok := strings.Cut(pos, ":")
	if !ok {
		return math.MaxInt
	}
	n := 0
	for _, c := range rest {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// maskableByRedact reports whether default mask can write redact's text
// into the column; other columns get NULL.
func maskableByRedact(ci ColumnInfo) bool {
	if ci.Kind() != transform.KindText || ci.IsJSON() || ci.IsArray() {
		return false
	}
	n := ci.MaxLen()
	return n < 0 || n >= len("REDACTED")
}

func validateRule(r *Rule, ci ColumnInfo, keys *transform.Keys, report func(string, ...any)) {
	nested := r.JSONPath != "" || r.Elements
	switch {
	case r.JSONPath != "" && !ci.IsJSON():
		report("json path on a %s column, want json or jsonb", ci.Type)
		return
	case r.Elements && !ci.IsArray():
		report("elements on a %s column, want an array", ci.Type)
		return
	}

	t, err := transform.New(transform.Spec{Name: r.Transformer, Params: r.Params}, keys)
	if err != nil {
		report("%v", err)
		return
	}
	info := t.Info()
	if ci.Unique && !nested && !info.Injective {
		report("%s is not injective, so it cannot mask a UNIQUE or primary key column", info.Name)
	}
	if info.Null && ci.NotNull && !nested {
		report("null on a NOT NULL column")
	}
	if ci.IsJSON() && !nested {
		report("%s on a whole %s column, use json paths", info.Name, ci.Type)
		return
	}
	kind := ci.Kind()
	if info.Kinds&kind == 0 {
		report("%s produces %s, but the column is %s", info.Name, info.Kinds, ci.Type)
	}
	if n := ci.MaxLen(); n >= 0 && !nested {
		if out := info.MaxLen(n); out < 0 || out > n {
			bound := "no bound"
			if out >= 0 {
				bound = fmt.Sprintf("up to %d", out)
			}
			report("%s output has %s characters, but the column is %s", info.Name, bound, ci.Type)
		}
	}
}
