package pgproxy

import (
	"fmt"
	"slices"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"ward.dev/ward/masking/rules"
)

// relationColumns returns the lineage of each column of rel: itself for a
// table, the traced definition for a view or materialized view. Results
// are cached in rel.
func (r *resolver) relationColumns(rel *relation) ([]outputColumn, error) {
	rel.mu.Lock()
	defer rel.mu.Unlock()
	if !rel.traced {
		// NOTE: strict mode does not see the conditions and computations
		// inside a view, because only its lineage is kept. Callers cannot
		// create views unless ddl: allow is set.
		inner := &resolver{ctx: r.ctx, cat: r.cat, depth: r.depth}
		rel.lineage, rel.traceErr = inner.traceRelation(rel)
		rel.statsViews = inner.statsViews
		// A failure from nesting depth depends on where the relation was
		// reached, so only results found at the top are kept.
		rel.traced = r.depth == 0 || rel.traceErr == nil
	}
	r.statsViews = append(r.statsViews, rel.statsViews...)
	if rel.traceErr != nil {
		return nil, rel.traceErr
	}
	return slices.Clone(rel.lineage), nil
}

// addGenerated adds to each generated column the columns its expression
// reads, since a column such as lower(email) STORED carries their values.
func (r *resolver) addGenerated(rel *relation, cols []outputColumn) {
	plain := &rangeEntry{name: rel.Name, cols: slices.Clone(cols)}
	sc := &scope{entries: []*rangeEntry{plain}}
	for i, expr := range rel.Generated {
		if expr == "" || i >= len(cols) {
			continue
		}
		var merged sources
		merged.union(cols[i].src)
		tree, err := pg_query.Parse("SELECT " + expr)
		targets := tree.GetStmts()
		if err != nil || len(targets) != 1 || len(targets[0].Stmt.GetSelectStmt().GetTargetList()) != 1 {
			merged.unknown = true
		} else {
			merged.union(r.expr(targets[0].Stmt.GetSelectStmt().TargetList[0].GetResTarget().GetVal(), sc))
		}
		cols[i].src = merged
	}
}

func (r *resolver) traceRelation(rel *relation) ([]outputColumn, error) {
	if rel.Schema == "pg_catalog" && slices.Contains(valueExposingCatalogs, rel.Name) || rel.Name == "pg_stat_statements" {
		r.statsViews = append(r.statsViews, rel.Schema+"."+rel.Name)
	}
	if rel.Kind != 'v' && rel.Kind != 'm' {
		cols := make([]outputColumn, len(rel.Columns))
		for i, c := range rel.Columns {
			cols[i] = outputColumn{name: c}
			// A partition or inheritance child holds rows of its root
			// table, so the root's rules and permissions apply to it.
			schema, table := rel.Schema, rel.Name
			if rel.RootName != "" {
				schema, table = rel.RootSchema, rel.RootName
			}
			cols[i].src.add(rules.Column{Schema: schema, Table: table, Name: c})
		}
		r.addGenerated(rel, cols)
		return cols, nil
	}

	if r.depth >= maxViewDepth {
		return nil, fmt.Errorf("%w: views nested deeper than %d", errLineage, maxViewDepth)
	}
	tree, err := pg_query.Parse(rel.Definition)
	if err != nil || len(tree.Stmts) != 1 {
		return nil, fmt.Errorf("%w: definition of %s.%s", errLineage, rel.Schema, rel.Name)
	}
	inner := &resolver{ctx: r.ctx, cat: r.cat, depth: r.depth + 1}
	cols, err := inner.statementOutputs(tree.Stmts[0].Stmt, nil)
	r.statsViews = append(r.statsViews, inner.statsViews...)
	if err != nil {
		return nil, err
	}
	if len(cols) != len(rel.Columns) {
		return nil, fmt.Errorf("%w: view %s.%s has %d columns, definition %d", errLineage, rel.Schema, rel.Name, len(rel.Columns), len(cols))
	}
	for i := range cols {
		cols[i].name = rel.Columns[i]
	}
	return cols, nil
}
