package rules

import (
	"fmt"
	"sort"
	"strings"

	"ward.dev/ward/masking/transform"
)

// Field is one value of a row in text form.
type Field struct {
	Text string
	Null bool
}

// Table masks the rows of one table whose columns arrive in a fixed order.
// A Table is safe for concurrent use when its transformers are, which every
// transformer except fake on a unique column is; that one serializes.
type Table struct {
	name    string
	columns []string
	plans   []columnPlan
	masks   bool
}

type columnPlan struct {
	steps  []*compiled
	entity int // index of the entity column, -1 for none
	null   bool
	whole  transform.Transformer
	// appender is whole when it can append, found once because an
	// interface conversion per value costs more than the append saves.
	appender transform.Appender
}

// Table returns the masker for schema.table with the given column order.
// Every rule on the table must name one of the columns, an entity column
// must exist, and in strict mode every column must have a rule.
func (p *Plan) Table(schema, table string, columns []string) (*Table, error) {
	t := &Table{name: schema + "." + table, columns: columns, plans: make([]columnPlan, len(columns))}

	// A partition holds rows of its partitioned table, so that table's
	// rules apply too; a rule on the partition itself takes precedence.
	root := ""
	if p.catalog != nil {
		root = p.catalog.Partitions[t.name]
	}
	// A repeated name would leave one of the columns outside its rule.
	index := map[string]int{}
	for i, c := range columns {
		if _, dup := index[c]; dup {
			return nil, fmt.Errorf("%w: table %s has column %q twice", ErrNoColumn, t.name, c)
		}
		index[c] = i
		t.plans[i].entity = -1
	}

	// Columns go in rule order, so the first missing column reported is the
	// first in the file.
	var cols []Column
	for col := range p.byCol {
		own := col.Schema == schema && col.Table == table
		inherited := root != "" && col.TableName() == root
		if inherited {
			if _, shadowed := p.byCol[Column{Schema: schema, Table: table, Name: col.Name}]; shadowed {
				continue
			}
		}
		if own || inherited {
			cols = append(cols, col)
		}
	}
	sort.Slice(cols, func(i, j int) bool { return p.byCol[cols[i]][0].rule.Line < p.byCol[cols[j]][0].rule.Line })
	for _, col := range cols {
		steps := p.byCol[col]
		i, ok := index[col.Name]
		if !ok {
			r := steps[0].rule
			return nil, fmt.Errorf("%w: %s: %s: table %s has no column %q", ErrNoColumn, r.Pos(), col, t.name, col.Name)
		}
		if err := t.plans[i].add(steps, index); err != nil {
			return nil, err
		}
	}

	var unclassified []string
	for i, c := range columns {
		cp := &t.plans[i]
		if cp.steps != nil {
			t.masks = t.masks || cp.null || cp.whole != nil || len(cp.steps) > 0 && cp.steps[0].t != nil
			continue
		}
		unclassified = append(unclassified, c)
		switch p.set.Default {
		case DefaultNull:
			cp.null = true
			t.masks = true
		case DefaultMask:
			// Text columns get redact; a column of another type, or one too
			// short for the text, gets NULL, since redact's text would not fit.
			if ci, ok := p.catalog.Lookup(Column{Schema: schema, Table: table, Name: c}); ok && !maskableByRedact(ci) {
				cp.null = true
			} else {
				cp.whole = p.mask
			}
			t.masks = true
		}
	}
	if p.set.Strict && len(unclassified) > 0 {
		sort.Strings(unclassified)
		return nil, fmt.Errorf("%w: %s: strict is set and table %s has columns without a rule: %s",
			ErrUnclassified, p.set.File, t.name, strings.Join(unclassified, ", "))
	}
	for i := range t.plans {
		t.plans[i].appender, _ = t.plans[i].whole.(transform.Appender)
	}
	return t, nil
}

func (cp *columnPlan) add(steps []*compiled, index map[string]int) error {
	cp.steps = steps
	for _, s := range steps {
		r := s.rule
		if r.Entity != "" {
			i, ok := index[r.Entity]
			if !ok {
				return fmt.Errorf("%w: %s: entity column %q is not in table %s", ErrNoColumn, r.Pos(), r.Entity, r.Column.TableName())
			}
			cp.entity = i
		}
		if s.t == nil || r.JSONPath != "" || r.Elements {
			continue
		}
		if s.t.Info().Null {
			cp.null = true
			continue
		}
		cp.whole = s.t
	}
	return nil
}

// Name returns schema.table.
func (t *Table) Name() string { return t.name }

// Columns returns the column order the table was opened with.
func (t *Table) Columns() []string { return t.columns }

// Ordered reports whether the table's output depends on the order rows
// are masked in, because a transformer remembers earlier outputs (fake on
// a unique column). Such a table must be masked by one goroutine in input
// order; others may be masked in parallel.
func (t *Table) Ordered() bool {
	for _, cp := range t.plans {
		if cp.whole != nil && cp.whole.Info().Stateful {
			return true
		}
		for _, s := range cp.steps {
			if s.t != nil && s.t.Info().Stateful {
				return true
			}
		}
	}
	return false
}

// Masks reports whether any column of the table changes; a table that
// keeps every column can be copied through unparsed.
func (t *Table) Masks() bool { return t.masks }

// TextColumns returns the indexes of the columns whose values MaskRow
// reads: those a transformer rewrites and those that key an entity. Every
// other column is kept or set to NULL, so its value may be in any
// encoding, such as COPY's binary format.
func (t *Table) TextColumns() []int {
	var cols []int
	read := make([]bool, len(t.plans))
	for i, cp := range t.plans {
		if cp.entity >= 0 {
			read[cp.entity] = true
		}
		if cp.null {
			continue
		}
		if cp.whole != nil {
			read[i] = true
		}
		for _, s := range cp.steps {
			if s.t != nil {
				read[i] = true
			}
		}
	}
	for i, r := range read {
		if r {
			cols = append(cols, i)
		}
	}
	return cols
}

// MaskRow masks row in place. row has one field per column. NULL stays
// NULL except under the null transformer. On error the row is partly
// masked and must not be written; the error names the column but not the
// value.
func (t *Table) MaskRow(row []Field) error {
	if len(row) != len(t.plans) {
		return fmt.Errorf("row has %d fields, want %d", len(row), len(t.plans))
	}
	// Entity values are read before any column changes, so a masked entity
	// column still keys its dependants by the original value.
	var entities []string
	for i := range t.plans {
		if e := t.plans[i].entity; e >= 0 {
			if entities == nil {
				entities = make([]string, len(row))
			}
			entities[i] = row[e].Text
		}
	}

	for i := range t.plans {
		cp := &t.plans[i]
		f := &row[i]
		if cp.null {
			*f = Field{Null: true}
			continue
		}
		if f.Null {
			continue
		}
		entity := ""
		if entities != nil {
			entity = entities[i]
		}
		if err := cp.apply(f, entity); err != nil {
			return fmt.Errorf("column %s: %w", t.columns[i], err)
		}
	}
	return nil
}

// MaskField masks the value of column i alone, as MaskRow would within a
// row. entity is the original value of the column's entity column, or ""
// when the caller does not have it. Callers that mask single columns of
// many rows (the masking proxy) avoid building whole rows this way.
func (t *Table) MaskField(i int, f Field, entity string) (Field, error) {
	if i < 0 || i >= len(t.plans) {
		return Field{}, fmt.Errorf("column index %d out of range for table %s", i, t.name)
	}
	cp := &t.plans[i]
	if cp.null {
		return Field{Null: true}, nil
	}
	if f.Null {
		return f, nil
	}
	if err := cp.apply(&f, entity); err != nil {
		return Field{}, fmt.Errorf("column %s: %w", t.columns[i], err)
	}
	return f, nil
}

// AppendField is MaskField for a value that is not NULL, with the masked
// text appended to dst. A column masked by one transformer that can append
// (transform.Appender) costs no string per value this way. On an error the
// returned slice is dst as it was.
func (t *Table) AppendField(dst []byte, i int, value, entity string) (out []byte, null bool, err error) {
	if i >= 0 && i < len(t.plans) {
		if a := t.plans[i].appender; a != nil && !t.plans[i].null {
			out, err := a.AppendTransform(dst, value, entity)
			if err != nil {
				return dst, false, fmt.Errorf("column %s: %w", t.columns[i], err)
			}
			return out, false, nil
		}
	}
	f, err := t.MaskField(i, Field{Text: value}, entity)
	if err != nil || f.Null {
		return dst, f.Null, err
	}
	return append(dst, f.Text...), false, nil
}

func (cp *columnPlan) apply(f *Field, entity string) error {
	if cp.whole != nil {
		out, err := cp.whole.Transform(f.Text, entity)
		if err != nil {
			return err
		}
		f.Text = out
		return nil
	}
	for _, s := range cp.steps {
		if s.t == nil {
			continue
		}
		var err error
		switch {
		case s.rule.JSONPath != "":
			f.Text, err = maskJSON(f.Text, s.rule.JSONPath, s.t, entity)
		case s.rule.Elements:
			f.Text, err = maskArray(f.Text, s.t, entity)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
