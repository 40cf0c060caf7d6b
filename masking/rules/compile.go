package rules

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"ward.dev/ward/masking/transform"
)

// Plan is a compiled ruleset: every rule with its transformer, foreign key
// rules added. A Plan is safe for concurrent use; its transformers are.
type Plan struct {
	set     *Ruleset
	catalog *Catalog
	byCol   map[Column][]*compiled
	mask    transform.Transformer // for default: mask
}

type compiled struct {
	rule *Rule
	t    transform.Transformer // nil for keep
}

// Compile builds the transformers of rs. catalog may be nil for files that
// carry no schema. Uniqueness and foreign keys are then unknown, and strict
// mode checks only the columns the input has, as each table is opened.
func Compile(rs *Ruleset, catalog *Catalog, keys *transform.Keys) (*Plan, error) {
	p := &Plan{set: rs, catalog: catalog, byCol: map[Column][]*compiled{}}
	rules, err := propagate(rs.Rules, catalog)
	if err != nil {
		return nil, err
	}

	// A derived rule shares its origin's transformer, so a fake on a unique
	// key gives the referencing columns the very same values.
	built := map[*Rule]transform.Transformer{}
	for _, r := range rules {
		c := &compiled{rule: r}
		if r.origin != nil {
			c.t = built[r.origin]
		} else if r.Transformer != KeepTransformer {
			info, _ := catalog.Lookup(r.Column)
			spec := transform.Spec{Name: r.Transformer, Params: r.Params, Unique: info.Unique && r.JSONPath == "" && !r.Elements}
			c.t, err = transform.New(spec, keys)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", r.Pos(), r.Column, err)
			}
			built[r] = c.t
		}
		p.byCol[r.Column] = append(p.byCol[r.Column], c)
	}

	if rs.Default == DefaultMask {
		p.mask, _ = transform.New(transform.Spec{Name: "redact"}, nil)
	}
	if rs.Strict && catalog != nil {
		if err := p.checkClassified(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// propagate copies each rule on a referenced column to the columns that
// reference it, transitively, so a masked key still joins. A referencing
// column with its own different rule is a conflict.
func propagate(rules []*Rule, catalog *Catalog) ([]*Rule, error) {
	if catalog == nil || len(catalog.ForeignKeys) == 0 {
		return rules, nil
	}
	out := append([]*Rule(nil), rules...)
	whole := map[Column]*Rule{}
	for _, r := range rules {
		if r.JSONPath == "" && !r.Elements {
			whole[r.Column] = r
		}
	}

	for changed := true; changed; {
		changed = false
		for _, fk := range catalog.ForeignKeys {
			src, ok := whole[fk.To]
			if !ok || src.Transformer == KeepTransformer {
				continue
			}
			if own, ok := whole[fk.From]; ok {
				if !sameSpec(own, src) {
					return nil, fmt.Errorf("%w: %s: %s references %s, masked at %s by another rule, so joins would break; remove the rule or make it equal",
						ErrConflict, own.Pos(), fk.From, fk.To, src.Pos())
				}
				continue
			}
			d := *src
			d.Column = fk.From
			d.origin = src
			for d.origin.origin != nil {
				d.origin = d.origin.origin
			}
			d.Derived = fmt.Sprintf("%s (foreign key to %s)", src.Pos(), fk.To)
			whole[fk.From] = &d
			out = append(out, &d)
			changed = true
		}
	}
	return out, nil
}

func sameSpec(a, b *Rule) bool {
	if a.Transformer != b.Transformer || len(a.Params) != len(b.Params) {
		return false
	}
	for k, v := range a.Params {
		if b.Params[k] != v {
			return false
		}
	}
	return true
}

func (p *Plan) checkClassified() error {
	var missing []string
	for _, cols := range p.catalog.Tables {
		for _, ci := range cols {
			_, own := p.byCol[ci.Column]
			_, inherited := p.byCol[p.catalog.rootColumn(ci.Column)]
			if !own && !inherited {
				missing = append(missing, ci.Column.String())
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	return fmt.Errorf("%w: %s: strict is set and %d columns have no rule: %s", ErrUnclassified, p.set.File, len(missing), strings.Join(missing, ", "))
}

// CheckTables returns an error naming the first rule whose table the
// catalog does not have (partitioned tables count), because such a rule
// would silently mask nothing. Without a catalog it returns nil.
func (p *Plan) CheckTables() error {
	if p.catalog == nil {
		return nil
	}
	known := map[string]bool{}
	for t := range p.catalog.Tables {
		known[t] = true
	}
	for _, root := range p.catalog.Partitions {
		known[root] = true
	}
	var first *Rule
	for _, r := range p.set.Rules {
		if !known[r.Column.TableName()] && (first == nil || r.Line < first.Line) {
			first = r
		}
	}
	if first != nil {
		return fmt.Errorf("%w: %s: table %s not found", ErrNoColumn, first.Pos(), first.Column.TableName())
	}
	return nil
}

// Covers reports whether any rule, or a default other than keep, applies
// to schema.table.
func (p *Plan) Covers(schema, table string) bool {
	if p.set.Default != DefaultKeep {
		return true
	}
	for col := range p.byCol {
		if col.Schema == schema && col.Table == table {
			return true
		}
	}
	return false
}

// Ruleset returns the ruleset the plan was compiled from.
func (p *Plan) Ruleset() *Ruleset { return p.set }

// Rules returns the compiled rules for col, foreign key copies included.
func (p *Plan) Rules(col Column) []*Rule {
	var out []*Rule
	for _, c := range p.byCol[col] {
		out = append(out, c.rule)
	}
	return out
}

// ErrNoColumn means a rule names a table or column the input does not have.
var ErrNoColumn = errors.New("rule names a missing table or column")
