package pgproxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"ward.dev/ward/masking/rules"
)

// errLineage means the source columns of a statement's outputs cannot be
// established, so every output without a RowDescription origin is unknown.
var errLineage = errors.New("lineage unknown")

// maxViewDepth bounds how deep views over views are followed.
const maxViewDepth = 8

// sources is the set of columns an output value is derived from. Unknown
// marks a value that may also depend on something the proxy cannot see,
// such as a user-defined function body.
type sources struct {
	cols    map[rules.Column]struct{}
	unknown bool
}

func (s *sources) add(c rules.Column) {
	if s.cols == nil {
		s.cols = map[rules.Column]struct{}{}
	}
	s.cols[c] = struct{}{}
}

func (s *sources) union(o sources) {
	for c := range o.cols {
		s.add(c)
	}
	s.unknown = s.unknown || o.unknown
}

// list returns the columns sorted by name.
func (s sources) list() []rules.Column {
	out := make([]rules.Column, 0, len(s.cols))
	for c := range s.cols {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b rules.Column) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// outputColumn is one column of a result: its name and lineage.
type outputColumn struct {
	name string
	src  sources
}

// rangeEntry is one item of a FROM list as the expressions see it.
type rangeEntry struct {
	name string
	cols []outputColumn
	// opaque, when set, is the lineage of every column of an entry whose
	// columns are not known one by one (a function in FROM).
	opaque *sources
}

type scope struct {
	parent  *scope
	entries []*rangeEntry
	ctes    map[string]*rangeEntry
	// noStar is set when "*" cannot be expanded column by column, as for
	// JOIN ... USING, which merges columns.
	noStar bool
}

func (sc *scope) cte(name string) *rangeEntry {
	for s := sc; s != nil; s = s.parent {
		if e, ok := s.ctes[name]; ok {
			return e
		}
	}
	return nil
}

// resolver traces statement outputs to source columns. It is used by one
// goroutine at a time.
type resolver struct {
	ctx   context.Context
	cat   catalogSource
	depth int
	// steps counts the nodes walked, up to maxWalkSteps.
	steps int
	// inExpr counts the expression nodes around the node being walked,
	// from the nearest output or subquery.
	inExpr int
	// computed collects columns an expression computes on rather than
	// passes through as they are, for strict mode. A computation that
	// fails for some values (a cast, a division) reveals whether a guess
	// was right.
	computed sources
	// filters collects columns read in WHERE, JOIN ON, GROUP BY, HAVING,
	// ORDER BY and DISTINCT, for strict mode.
	filters sources
	// statsViews lists catalog relations that expose column values.
	statsViews []string
	// setsConfig is set when a set_config call was seen: it changes
	// settings such as default_transaction_read_only from inside a SELECT.
	setsConfig bool
	// rejected names a function call the proxy never relays.
	rejected string
	// writesWith names a function that writes although the statement
	// that calls it reads, such as lo_put.
	writesWith string
}

// maxWalkSteps bounds the expression nodes one statement's analysis
// visits. Statements up to the largest message the proxy accepts stay
// far below it when each node is visited a few times.
const maxWalkSteps = 1 << 22

// comparisonOperators are the operators whose result reveals something
// about their operands: equality, order and pattern matches.
var comparisonOperators = map[string]bool{
	"=": true, "<>": true, "!=": true, "<": true, ">": true, "<=": true, ">=": true,
	"~~": true, "!~~": true, "~~*": true, "!~~*": true, "~": true, "!~": true, "~*": true, "!~*": true,
}

// comparison reports whether e compares its operands: a comparison
// operator, or IN, LIKE, SIMILAR TO, BETWEEN, IS DISTINCT FROM and the
// like, which have their own expression kinds.
func comparison(e *pg_query.A_Expr) bool {
	if e.Kind != pg_query.A_Expr_Kind_AEXPR_OP {
		return true
	}
	n := len(e.Name)
	return n > 0 && comparisonOperators[e.Name[n-1].GetString_().GetSval()]
}

// setReturningFunctions are the built-ins that return sets of rows from
// their arguments. In an output list too, they multiply or remove rows.
var setReturningFunctions = map[string]bool{
	"generate_series": true, "generate_subscripts": true, "unnest": true,
	"regexp_matches": true, "regexp_split_to_table": true, "string_to_table": true,
	"json_array_elements": true, "json_array_elements_text": true, "jsonb_array_elements": true,
	"jsonb_array_elements_text": true, "json_each": true, "json_each_text": true, "jsonb_each": true,
	"jsonb_each_text": true, "json_object_keys": true, "jsonb_object_keys": true, "jsonb_path_query": true,
	"json_populate_recordset": true, "jsonb_populate_recordset": true, "json_to_recordset": true,
	"jsonb_to_recordset": true, "ts_parse": true, "ts_debug": true,
}

// otherSessionFunctions act on other backends. Every proxy session logs in
// upstream as the same role, so through the proxy they would let one
// caller end or cancel another caller's session.
// The activity functions show their statements, which may quote values.
var otherSessionFunctions = map[string]bool{
	"pg_terminate_backend": true, "pg_cancel_backend": true,
	"pg_stat_get_activity": true, "pg_stat_get_backend_activity": true,
}

// sqlRunningFunctions run SQL text given as an argument, which the proxy
// cannot check: it could call set_config or write.
var sqlRunningFunctions = map[string]bool{
	"query_to_xml": true, "query_to_xmlschema": true, "query_to_xml_and_xmlschema": true,
	"ts_stat": true, "ts_rewrite": true, "dblink": true, "dblink_exec": true, "dblink_open": true,
	"dblink_send_query": true,
}

// largeObjectWriters create, change or remove large objects, which
// PostgreSQL 15 allows in a read-only transaction.
var largeObjectWriters = map[string]bool{
	"lo_create": true, "lo_creat": true, "lo_from_bytea": true, "lo_import": true, "lo_export": true,
	"lo_put": true, "lo_truncate": true, "lo_truncate64": true, "lo_unlink": true, "lowrite": true, "lo_open": true,
}

// valueExposingCatalogs are catalog relations whose columns hold samples of
// table data, or statement texts that may quote values, so the proxy
// rejects statements that read them in every mode. pg_stat_statements is matched in any
// schema, since the extension is installed where the administrator chose.
var valueExposingCatalogs = []string{"pg_stats", "pg_stats_ext", "pg_stats_ext_exprs", "pg_statistic",
	"pg_statistic_ext_data", "pg_stat_activity", "pg_prepared_statements", "pg_cursors"}

func (r *resolver) selectStmt(sel *pg_query.SelectStmt, parent *scope) ([]outputColumn, error) {
	if sel == nil {
		return nil, errLineage
	}
	sc := &scope{parent: parent}
	if sel.WithClause != nil {
		if err := r.withClause(sel.WithClause, sc); err != nil {
			return nil, err
		}
	}

	if sel.Op != pg_query.SetOperation_SETOP_NONE {
		left, err := r.selectStmt(sel.Larg, sc)
		if err != nil {
			return nil, err
		}
		right, err := r.selectStmt(sel.Rarg, sc)
		if err != nil {
			return nil, err
		}
		if len(left) != len(right) {
			return nil, errLineage
		}
		// The sides may share lineage maps with FROM entries, so the
		// merge builds new ones.
		for i := range left {
			var merged sources
			merged.union(left[i].src)
			merged.union(right[i].src)
			left[i].src = merged
		}
		r.filterExprs(sc, sel.SortClause)
		r.positionalFilters(left, sel.SortClause)
		if !sel.All || sel.Op != pg_query.SetOperation_SETOP_UNION {
			// Every set operation but UNION ALL compares whole rows.
			r.outputFilters(left)
		}
		return left, nil
	}

	if len(sel.ValuesLists) > 0 {
		var out []outputColumn
		for _, row := range sel.ValuesLists {
			items := row.GetList().GetItems()
			if out == nil {
				out = make([]outputColumn, len(items))
				for i := range out {
					out[i].name = fmt.Sprintf("column%d", i+1)
				}
			}
			if len(items) != len(out) {
				return nil, errLineage
			}
			for i, item := range items {
				out[i].src.union(r.expr(item, sc))
			}
		}
		return out, nil
	}

	for _, item := range sel.FromClause {
		e, err := r.fromItem(item, sc)
		if err != nil {
			return nil, err
		}
		sc.entries = append(sc.entries, e...)
	}

	var out []outputColumn
	for _, t := range sel.TargetList {
		cols, err := r.target(t.GetResTarget(), sc)
		if err != nil {
			return nil, err
		}
		out = append(out, cols...)
	}

	r.filterExprs(sc, []*pg_query.Node{sel.WhereClause, sel.HavingClause})
	r.filterExprs(sc, sel.GroupClause)
	r.filterExprs(sc, sel.SortClause)
	r.filterExprs(sc, sel.DistinctClause)
	// LIMIT and OFFSET may hold subqueries whose conditions decide how many
	// rows come back, and a named window's PARTITION BY and ORDER BY decide
	// their order: in strict mode they are conditions like WHERE.
	r.filterExprs(sc, []*pg_query.Node{sel.LimitCount, sel.LimitOffset})
	r.filterExprs(sc, sel.WindowClause)
	r.positionalFilters(out, sel.SortClause, sel.GroupClause, sel.DistinctClause)
	if len(sel.DistinctClause) == 1 && sel.DistinctClause[0].GetNode() == nil {
		// A plain DISTINCT compares whole rows.
		r.outputFilters(out)
	}
	return out, nil
}

// outputFilters adds every output column to the filters.
func (r *resolver) outputFilters(out []outputColumn) {
	for _, o := range out {
		r.filters.union(o.src)
	}
}

// positionalFilters adds every output column to the filters when ORDER BY,
// GROUP BY or DISTINCT ON contains a bare constant, which PostgreSQL reads
// as an output column's position. Every output counts, whichever the
// position, because the statement cache shares one analysis among texts
// that differ only in constants.
//
// NOTE: so strict mode rejects "SELECT id, email ... ORDER BY 1" for a
// caller who sees email masked, although only id is sorted on.
func (r *resolver) positionalFilters(out []outputColumn, clauses ...[]*pg_query.Node) {
	for _, clause := range clauses {
		if hasConstantItem(clause) {
			r.outputFilters(out)
			return
		}
	}
}

// hasConstantItem reports whether a sort, grouping or DISTINCT ON list
// has an item that is a bare constant, directly or in a grouping set.
func hasConstantItem(items []*pg_query.Node) bool {
	for _, n := range items {
		if sortBy := n.GetSortBy(); sortBy != nil {
			n = sortBy.Node
		}
		switch {
		case n.GetAConst() != nil:
			return true
		case n.GetGroupingSet() != nil && hasConstantItem(n.GetGroupingSet().Content):
			return true
		case n.GetRowExpr() != nil && hasConstantItem(n.GetRowExpr().Args):
			return true
		case n.GetList() != nil && hasConstantItem(n.GetList().Items):
			return true
		}
	}
	return false
}

func (r *resolver) filterExprs(sc *scope, nodes []*pg_query.Node) {
	var discarded sources
	r.condition(sc, &discarded, nodes...)
}

func (r *resolver) withClause(w *pg_query.WithClause, sc *scope) error {
	sc.ctes = map[string]*rangeEntry{}
	for _, n := range w.Ctes {
		cte := n.GetCommonTableExpr()
		if cte == nil {
			return errLineage
		}
		if w.Recursive {
			// A recursive reference reads rows this CTE produced, whose
			// lineage is not known yet, so it counts as unknown.
			sc.ctes[cte.Ctename] = &rangeEntry{name: cte.Ctename, opaque: &sources{unknown: true}}
		}
		cols, err := r.statementOutputs(cte.Ctequery, sc)
		if err != nil {
			return err
		}
		renameColumns(cols, cte.Aliascolnames)
		sc.ctes[cte.Ctename] = &rangeEntry{name: cte.Ctename, cols: cols}
	}
	return nil
}

func renameColumns(cols []outputColumn, names []*pg_query.Node) {
	for i, n := range names {
		if i < len(cols) {
			cols[i].name = n.GetString_().GetSval()
		}
	}
}

// statementOutputs resolves a statement that returns rows: a SELECT or a
// data-modifying statement with RETURNING.
func (r *resolver) statementOutputs(n *pg_query.Node, sc *scope) ([]outputColumn, error) {
	switch {
	case n.GetSelectStmt() != nil:
		return r.selectStmt(n.GetSelectStmt(), sc)
	case n.GetInsertStmt() != nil:
		s := n.GetInsertStmt()
		return r.returning(s.Relation, nil, s.ReturningList, sc)
	case n.GetUpdateStmt() != nil:
		s := n.GetUpdateStmt()
		return r.returning(s.Relation, s.FromClause, s.ReturningList, sc)
	case n.GetDeleteStmt() != nil:
		s := n.GetDeleteStmt()
		return r.returning(s.Relation, s.UsingClause, s.ReturningList, sc)
	}
	return nil, errLineage
}

func (r *resolver) returning(rel *pg_query.RangeVar, from, list []*pg_query.Node, parent *scope) ([]outputColumn, error) {
	sc := &scope{parent: parent}
	e, err := r.rangeVar(rel, sc)
	if err != nil {
		return nil, err
	}
	sc.entries = append(sc.entries, e)
	for _, item := range from {
		es, err := r.fromItem(item, sc)
		if err != nil {
			return nil, err
		}
		sc.entries = append(sc.entries, es...)
	}
	var out []outputColumn
	for _, t := range list {
		cols, err := r.target(t.GetResTarget(), sc)
		if err != nil {
			return nil, err
		}
		out = append(out, cols...)
	}
	return out, nil
}

func (r *resolver) fromItem(n *pg_query.Node, sc *scope) ([]*rangeEntry, error) {
	switch {
	case n.GetRangeVar() != nil:
		e, err := r.rangeVar(n.GetRangeVar(), sc)
		return []*rangeEntry{e}, err

	case n.GetRangeSubselect() != nil:
		sub := n.GetRangeSubselect()
		outer := sc.parent
		if sub.Lateral {
			outer = sc
		}
		cols, err := r.statementOutputs(sub.Subquery, outer)
		if err != nil {
			return nil, err
		}
		e := &rangeEntry{cols: cols}
		if sub.Alias != nil {
			e.name = sub.Alias.Aliasname
			renameColumns(cols, sub.Alias.Colnames)
		}
		return []*rangeEntry{e}, nil

	case n.GetJoinExpr() != nil:
		j := n.GetJoinExpr()
		left, err := r.fromItem(j.Larg, sc)
		if err != nil {
			return nil, err
		}
		right, err := r.fromItem(j.Rarg, sc)
		if err != nil {
			return nil, err
		}
		entries := append(left, right...)
		if j.IsNatural || len(j.UsingClause) > 0 || j.Alias != nil {
			sc.noStar = true
		}
		joined := &scope{parent: sc.parent, entries: entries}
		r.filterExprs(joined, []*pg_query.Node{j.Quals})
		// USING and NATURAL compare the columns they name or share.
		if j.IsNatural {
			r.filters.unknown = true
		}
		for _, u := range j.UsingClause {
			name := u.GetString_().GetSval()
			for _, e := range entries {
				if e.opaque != nil {
					r.filters.union(*e.opaque)
				}
				for _, c := range e.cols {
					if c.name == name {
						r.filters.union(c.src)
					}
				}
			}
		}
		return entries, nil

	case n.GetRangeTableSample() != nil:
		// The sampling arguments decide which rows come back, and a value
		// out of range fails.
		ts := n.GetRangeTableSample()
		r.filterExprs(sc, ts.Args)
		r.filterExprs(sc, []*pg_query.Node{ts.Repeatable})
		return r.fromItem(ts.Relation, sc)
	}

	// Functions in FROM, XMLTABLE and JSON_TABLE: their columns derive from
	// their arguments, which are walked as one expression. The arguments
	// also decide how many rows there are, so strict mode reads them like
	// WHERE.
	src := r.expr(n, sc)
	r.filters.union(src)
	name := ""
	if f := n.GetRangeFunction(); f != nil && f.Alias != nil {
		name = f.Alias.Aliasname
	}
	return []*rangeEntry{{name: name, opaque: &src}}, nil
}

func (r *resolver) rangeVar(rv *pg_query.RangeVar, sc *scope) (*rangeEntry, error) {
	if rv == nil {
		return nil, errLineage
	}
	alias := rv.Relname
	if rv.Alias != nil {
		alias = rv.Alias.Aliasname
	}
	if rv.Schemaname == "" {
		if cte := sc.cte(rv.Relname); cte != nil {
			e := *cte
			e.name = alias
			e.cols = slices.Clone(cte.cols)
			if rv.Alias != nil {
				renameColumns(e.cols, rv.Alias.Colnames)
			}
			return &e, nil
		}
	}

	rel, err := r.cat.relationByName(r.ctx, rv.Schemaname, rv.Relname)
	if err != nil {
		return nil, err
	}
	if rel == nil {
		return nil, fmt.Errorf("%w: relation %q not found", errLineage, rv.Relname)
	}
	cols, err := r.relationColumns(rel)
	if err != nil {
		return nil, err
	}
	if rv.Alias != nil {
		renameColumns(cols, rv.Alias.Colnames)
	}
	return &rangeEntry{name: alias, cols: cols}, nil
}

func (r *resolver) target(t *pg_query.ResTarget, sc *scope) ([]outputColumn, error) {
	if t == nil {
		return nil, errLineage
	}
	if ref := t.Val.GetColumnRef(); ref != nil && isStar(ref) {
		return r.expandStar(ref, sc)
	}
	name := t.Name
	if name == "" {
		name = outputName(t.Val)
	}
	return []outputColumn{{name: name, src: r.expr(t.Val, sc)}}, nil
}

// expr returns the lineage of an expression: every column it reads, through
// operators, casts, CASE, function calls, row constructors and subqueries.
func (r *resolver) expr(n *pg_query.Node, sc *scope) sources {
	var out sources
	r.walk(n.ProtoReflect(), sc, &out)
	return out
}

// condition walks nodes once into out and counts their sources as read
// by a condition too. Each node is walked once, so nested conditions cost
// time linear in their size.
func (r *resolver) condition(sc *scope, out *sources, nodes ...*pg_query.Node) {
	var cond sources
	r.walkNodes(sc, &cond, nodes...)
	r.filters.union(cond)
	out.union(cond)
}

// walkNodes walks each node that is not nil into out.
func (r *resolver) walkNodes(sc *scope, out *sources, nodes ...*pg_query.Node) {
	for _, n := range nodes {
		if n != nil {
			r.walk(n.ProtoReflect(), sc, out)
		}
	}
}

func (r *resolver) walk(m protoreflect.Message, sc *scope, out *sources) {
	// A walk that repeated work for nested nodes would take time
	// exponential in their depth. The bound makes such a statement's
	// lineage unknown rather than let it stall the session.
	if r.steps++; r.steps > maxWalkSteps {
		out.unknown = true
		r.filters.unknown = true
		return
	}
	switch m.Interface().(type) {
	case *pg_query.Node, *pg_query.ColumnRef, *pg_query.SubLink:
	default:
		r.inExpr++
		defer func() { r.inExpr-- }()
	}
	switch v := m.Interface().(type) {
	case *pg_query.ColumnRef:
		src := r.columnRef(v, sc)
		if r.inExpr > 0 {
			r.computed.union(src)
		}
		out.union(src)
		return
	case *pg_query.SubLink:
		if v.Testexpr != nil {
			// x IN (SELECT ...) compares x.
			r.condition(sc, out, v.Testexpr)
		}
		outer := r.inExpr
		r.inExpr = 0
		cols, err := r.statementOutputs(v.Subselect, sc)
		r.inExpr = outer
		if err != nil {
			out.unknown = true
			return
		}
		for _, c := range cols {
			out.union(c.src)
		}
		return
	case *pg_query.A_Expr:
		if r.opaqueOperator(v.Name) {
			out.unknown = true
		}
		if comparison(v) {
			// A comparison in an output is a condition whose result
			// reaches the caller, as true or false or through a rule
			// applied to it.
			r.condition(sc, out, v.Lexpr, v.Rexpr)
			return
		}
	case *pg_query.NullTest:
		r.condition(sc, out, v.Arg)
		return
	case *pg_query.BooleanTest:
		r.condition(sc, out, v.Arg)
		return

	case *pg_query.CaseExpr:
		// The branch taken depends on the conditions, and a branch that
		// fails (1/0) shows the caller which one ran, so in strict mode
		// they are read like WHERE.
		r.condition(sc, out, v.Arg)
		for _, w := range v.Args {
			if cw := w.GetCaseWhen(); cw != nil {
				r.condition(sc, out, cw.Expr)
				r.walkNodes(sc, out, cw.Result)
			}
		}
		r.walkNodes(sc, out, v.Defresult)
		return
	case *pg_query.FuncCall:
		if r.opaqueFunction(v.Funcname) {
			out.unknown = true
		}
		setReturning := false
		if n := len(v.Funcname); n > 0 {
			switch fn := v.Funcname[n-1].GetString_().GetSval(); {
			case setReturningFunctions[fn]:
				// Its arguments decide how many rows the statement
				// returns, wherever it is called.
				setReturning = true
			case fn == "set_config":
				r.setsConfig = true
			case fn == "system_user":
				// The proxy's parser uses PostgreSQL 17's grammar, where
				// a bare system_user is this function. PostgreSQL 15
				// reads a column of that name.
				r.rejected = "system_user, which PostgreSQL 15 reads as a column name and the proxy as a function"
			case otherSessionFunctions[fn]:
				r.rejected = fn + ", which acts on other sessions of the shared database login"
			case sqlRunningFunctions[fn]:
				r.rejected = fn + ", which runs SQL text the proxy cannot check"
			case largeObjectWriters[fn] && r.writesWith == "":
				r.writesWith = "the large object function " + fn
			}
		}
		if w := v.Over; w != nil {
			r.condition(sc, out, w.PartitionClause...)
			r.condition(sc, out, w.OrderClause...)
			r.condition(sc, out, w.StartOffset, w.EndOffset)
		}
		if setReturning {
			r.condition(sc, out, v.Args...)
		} else {
			r.walkNodes(sc, out, v.Args...)
		}
		r.walkNodes(sc, out, v.AggOrder...)
		r.walkNodes(sc, out, v.AggFilter)
		return
	case *pg_query.RangeSubselect, *pg_query.SelectStmt:
		// A query nested in an expression without a SubLink (a function in
		// FROM taking a subquery) is traced as a statement.
		out.unknown = true
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				r.walk(l.Get(i).Message(), sc, out)
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			r.walk(v.Message(), sc, out)
		}
		return true
	})
}
