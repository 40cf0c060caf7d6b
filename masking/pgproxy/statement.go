package pgproxy

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// statement is the analysis of one SQL statement: output lineage, the
// columns its conditions read, and whether it writes.
type statement struct {
	// outputs is the lineage of each result column, or nil with
	// lineageErr set when it could not be traced.
	outputs    []outputColumn
	lineageErr error
	filters    sources
	statsViews []string
	// write is set for statements that change data or session settings
	// that read-only mode protects; writeWhat names the statement.
	write     bool
	writeWhat string
	// ddl is set for statements other than queries, data changes and
	// session commands: they may change the catalog the analyses rest on.
	ddl bool
	// declares and fetches name a cursor; a FETCH has the lineage of its
	// cursor's query.
	declares string
	// prepares names the statement a SQL PREPARE or DEALLOCATE replaces or
	// removes, which the extended protocol can bind too; deallocatesAll is
	// set for DEALLOCATE ALL.
	prepares       string
	deallocatesAll bool
	fetches        string
	// protected names a change to a setting the proxy relies on, which is
	// rejected in every write mode.
	protected string
	// rejected names what the proxy rejects in every mode for another
	// reason, with the reason.
	rejected string
	// computed lists the columns expressions compute on, which strict
	// mode allows only for columns the caller may see.
	computed sources
	// copyFormat is the row format of a COPY TO.
	copyFormat copyFormat
}

// statementCache keeps the analysis of recent statement texts, which does
// not depend on the caller, for catalogTTL like the catalog it was traced
// with. It is safe for concurrent use.
type statementCache struct {
	clock func() time.Time

	mu      sync.Mutex
	filled  time.Time
	entries map[string][]*statement
}

// Bounds of the statement cache: texts longer than maxCachedText are not
// kept, and a full cache drops an arbitrary entry.
const (
	maxCachedStatements = 4096
	maxCachedText       = 16 << 10
)

func (c *statementCache) parse(ctx context.Context, cat catalogSource, sql string) ([]*statement, error) {
	if len(sql) <= maxCachedText {
		buf := keyBuffers.Get().(*[]byte)
		defer keyBuffers.Put(buf)
		if key, ok := appendFastKey((*buf)[:0], sql); ok {
			*buf = key
			if stmts, ok := c.getBytes(key); ok {
				return stmts, nil
			}
			stmts, err := parseStatements(ctx, cat, sql)
			if err == nil {
				c.put(string(key), stmts)
			}
			return stmts, err
		}
	}
	if stmts, ok := c.get(sql); ok {
		return stmts, nil
	}
	key := sql
	if len(sql) <= maxCachedText {
		key = literalFreeKey(sql)
		if stmts, ok := c.get(key); ok {
			return stmts, nil
		}
	}

	stmts, err := parseStatements(ctx, cat, sql)
	if err != nil || len(sql) > maxCachedText {
		return stmts, err
	}
	// Texts that differ only in literals are stored once, under key.
	c.put(key, stmts)
	return stmts, nil
}

func (c *statementCache) get(key string) ([]*statement, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire()
	stmts, ok := c.entries[key]
	return stmts, ok
}

// getBytes is get for a key held in a buffer; the map lookup does not
// copy it.
func (c *statementCache) getBytes(key []byte) ([]*statement, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire()
	stmts, ok := c.entries[string(key)]
	return stmts, ok
}

// expire empties the cache when it is older than catalogTTL. c.mu is held.
func (c *statementCache) expire() {
	if now := c.clock(); now.Sub(c.filled) >= catalogTTL {
		c.reset(now)
	}
}

// reset empties the cache as of now. c.mu is held.
func (c *statementCache) reset(now time.Time) {
	clear(c.entries)
	c.filled = now
}

// keyBuffers holds buffers for building fast keys.
var keyBuffers = sync.Pool{New: func() any { return new([]byte) }}

func (c *statementCache) put(key string, stmts []*statement) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string][]*statement{}
	}
	if len(c.entries) >= maxCachedStatements {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = stmts
}

// literalFreeKey returns a cache key in which the literals of a single
// SELECT, VALUES, TABLE or WITH statement are replaced by "?", so texts
// that differ only in constants share one analysis. A literal never adds a
// source column and never decides whether such a statement writes. Other
// statements (EXPLAIN options, SET values) may depend on their literals,
// so for them, and for text the scanner rejects, the key is sql itself.
func literalFreeKey(sql string) string {
	scan, err := pg_query.Scan(sql)
	if err != nil {
		return sql
	}
	var b strings.Builder
	b.WriteString("\x00literal-free\x00")
	first := true
	for i, t := range scan.Tokens {
		switch t.Token {
		case pg_query.Token_SQL_COMMENT, pg_query.Token_C_COMMENT:
			continue
		case pg_query.Token_ASCII_59:
			if i != len(scan.Tokens)-1 {
				return sql
			}
			continue
		}
		if first {
			switch t.Token {
			case pg_query.Token_SELECT, pg_query.Token_VALUES, pg_query.Token_TABLE, pg_query.Token_WITH:
			default:
				return sql
			}
			first = false
		}
		switch t.Token {
		case pg_query.Token_SCONST, pg_query.Token_USCONST, pg_query.Token_ICONST, pg_query.Token_FCONST,
			pg_query.Token_BCONST, pg_query.Token_XCONST:
			b.WriteString("? ")
		default:
			if t.Start < 0 || t.End > int32(len(sql)) || t.Start > t.End {
				return sql
			}
			b.WriteString(sql[t.Start:t.End])
			b.WriteByte(' ')
		}
	}
	return b.String()
}

// parseStatements splits and analyzes sql. A parse error is returned as is;
// PostgreSQL will reject the text too.
func parseStatements(ctx context.Context, cat catalogSource, sql string) ([]*statement, error) {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return nil, err
	}
	out := make([]*statement, 0, len(tree.Stmts))
	for _, raw := range tree.Stmts {
		out = append(out, analyzeStatement(ctx, cat, raw.Stmt))
	}
	return out, nil
}

func analyzeStatement(ctx context.Context, cat catalogSource, n *pg_query.Node) *statement {
	st := &statement{}
	r := &resolver{ctx: ctx, cat: cat}
	trace := func(q *pg_query.Node) {
		st.outputs, st.lineageErr = r.statementOutputs(q, nil)
		if st.lineageErr != nil {
			st.outputs = nil
		}
	}

	switch {
	case n.GetSelectStmt() != nil:
		sel := n.GetSelectStmt()
		trace(n)
		if sel.IntoClause != nil {
			st.setWrite("SELECT INTO")
		}
		if w := modifyingCTE(sel.WithClause); w != "" {
			st.setWrite(w)
		}
	case n.GetInsertStmt() != nil, n.GetUpdateStmt() != nil, n.GetDeleteStmt() != nil:
		trace(n)
		st.setWrite(statementName(n))
	case n.GetCopyStmt() != nil:
		c := n.GetCopyStmt()
		if c.IsFrom || c.IsProgram || c.Filename != "" {
			st.setWrite("COPY FROM or COPY to a file or program")
		}
		st.outputs, st.lineageErr = copyOutputs(r, c)
		st.copyFormat = parseCopyOptions(c.Options)
	case n.GetDeclareCursorStmt() != nil:
		d := n.GetDeclareCursorStmt()
		trace(d.Query)
		st.declares = d.Portalname
		if w := modifyingCTE(d.Query.GetSelectStmt().GetWithClause()); w != "" {
			st.setWrite(w)
		}
	case n.GetFetchStmt() != nil:
		st.fetches = n.GetFetchStmt().Portalname
		st.lineageErr = errLineage
	case n.GetPrepareStmt() != nil:
		st.prepares = n.GetPrepareStmt().Name
		st.setWrite("PREPARE")
		st.lineageErr = errLineage
		// A protocol Bind may run the prepared statement, so the checks
		// that reject a statement apply to it when it is prepared.
		inner := analyzeStatement(ctx, cat, n.GetPrepareStmt().Query)
		st.inherit(inner, r)
		if inner.ddl {
			st.ddl, st.writeWhat = true, "PREPARE of "+inner.writeWhat
		}
	case n.GetDeallocateStmt() != nil:
		if d := n.GetDeallocateStmt(); d.Name == "" {
			st.deallocatesAll = true
		} else {
			st.prepares = d.Name
		}
		st.lineageErr = errLineage
	case n.GetExplainStmt() != nil:
		// EXPLAIN prints plans, not values. EXPLAIN ANALYZE runs the
		// statement and reports how many rows each step found, which
		// would let set_config through and count rows by masked values.
		inner := analyzeStatement(ctx, cat, n.GetExplainStmt().Query)
		if explainAnalyzes(n.GetExplainStmt()) {
			st.rejected = "EXPLAIN ANALYZE, which runs the statement and counts its rows (use EXPLAIN without ANALYZE)"
			if inner.write {
				st.setWrite("EXPLAIN ANALYZE of " + inner.writeWhat)
			}
		}
		st.outputs = []outputColumn{{name: "QUERY PLAN"}}
		// Row estimates come from the statistics of the columns the
		// conditions read, so strict mode checks them as if run.
		st.inherit(inner, r)
	case n.GetVariableShowStmt() != nil:
		st.outputs = []outputColumn{{name: "setting"}}
	case n.GetVariableSetStmt() != nil:
		name := strings.ToLower(n.GetVariableSetStmt().Name)
		if protectedSettings[name] {
			st.protected = "SET or RESET " + name
		}
		if change := lexSettingChange(n.GetVariableSetStmt()); change != "" {
			st.protected = change
		}
		if setsReadWrite(n.GetVariableSetStmt().Args) {
			st.setWrite("SET " + name)
		}
		st.lineageErr = errLineage
	case n.GetTransactionStmt() != nil:
		if setsReadWrite(n.GetTransactionStmt().Options) {
			st.setWrite("a READ WRITE transaction")
		}
		st.lineageErr = errLineage
	case n.GetClosePortalStmt() != nil, n.GetDiscardStmt() != nil, n.GetListenStmt() != nil,
		n.GetUnlistenStmt() != nil, n.GetNotifyStmt() != nil:
		st.lineageErr = errLineage
	default:
		st.setWrite(statementName(n))
		st.ddl = true
		st.lineageErr = errLineage
	}
	st.filters = r.filters
	st.statsViews = append(st.statsViews, r.statsViews...)
	if r.setsConfig {
		st.protected = "set_config"
	}
	st.rejected = cmp.Or(st.rejected, r.rejected)
	st.computed = r.computed
	if updatesSettings(n.ProtoReflect()) {
		// pg_settings' update rule calls set_config.
		st.protected = "UPDATE pg_settings"
	}
	if r.writesWith != "" {
		st.setWrite(r.writesWith)
	}
	return st
}

// updatesSettings reports whether the parse tree m contains an UPDATE of
// pg_catalog.pg_settings, in a WITH clause too. The proxy keeps the
// default search_path, which searches the catalog schema first, so an
// unqualified pg_settings is that view.
func updatesSettings(m protoreflect.Message) bool {
	if u, ok := m.Interface().(*pg_query.UpdateStmt); ok {
		if rel := u.Relation; rel != nil && strings.EqualFold(rel.Relname, "pg_settings") &&
			(rel.Schemaname == "" || rel.Schemaname == "pg_catalog") {
			return true
		}
	}
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			for i := 0; i < v.List().Len() && !found; i++ {
				found = updatesSettings(v.List().Get(i).Message())
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			found = updatesSettings(v.Message())
		}
		return !found
	})
	return found
}

// inherit takes over the checks of inner, the statement that st prepares
// or explains: its rejections, catalog views, and the columns its
// conditions and computations read, which r adds to st at the end.
func (st *statement) inherit(inner *statement, r *resolver) {
	st.protected = cmp.Or(st.protected, inner.protected)
	st.rejected = cmp.Or(st.rejected, inner.rejected)
	st.statsViews = append(st.statsViews, inner.statsViews...)
	r.filters.union(inner.filters)
	r.computed.union(inner.computed)
}

func (st *statement) setWrite(what string) {
	if !st.write {
		st.write, st.writeWhat = true, what
	}
}

// protectedSettings are settings the client may not change. The read-only
// settings would let writes through and role settings change identity. The
// proxy resolves names with the upstream default search_path, so another
// search_path would make names resolve to relations it did not trace.
var protectedSettings = map[string]bool{
	"default_transaction_read_only": true, "transaction_read_only": true,
	"session_authorization": true, "role": true, "search_path": true,
}

func setsReadWrite(args []*pg_query.Node) bool {
	for _, a := range args {
		if d := a.GetDefElem(); d != nil && d.Defname == "transaction_read_only" {
			if c := d.Arg.GetAConst(); c != nil && c.GetIval().GetIval() == 0 {
				return true
			}
		}
	}
	return false
}

func explainAnalyzes(e *pg_query.ExplainStmt) bool {
	for _, o := range e.Options {
		if d := o.GetDefElem(); d != nil && d.Defname == "analyze" {
			if d.Arg == nil {
				return true
			}
			c := d.Arg.GetAConst()
			if c == nil || c.GetBoolval().GetBoolval() || c.GetSval().GetSval() != "false" && c.GetSval().GetSval() != "off" {
				return true
			}
		}
	}
	return false
}

func modifyingCTE(w *pg_query.WithClause) string {
	if w == nil {
		return ""
	}
	for _, n := range w.Ctes {
		q := n.GetCommonTableExpr().GetCtequery()
		if q != nil && q.GetSelectStmt() == nil {
			return "a data-modifying WITH"
		}
	}
	return ""
}

func copyOutputs(r *resolver, c *pg_query.CopyStmt) ([]outputColumn, error) {
	if c.Query != nil {
		out, err := r.statementOutputs(c.Query, nil)
		if err != nil {
			return nil, err
		}
		return out, nil
	}
	e, err := r.rangeVar(c.Relation, &scope{})
	if err != nil {
		return nil, err
	}
	if len(c.Attlist) == 0 {
		return e.cols, nil
	}
	var out []outputColumn
	for _, a := range c.Attlist {
		name := a.GetString_().GetSval()
		found := false
		for _, col := range e.cols {
			if col.name == name {
				out = append(out, col)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("%w: COPY column %q", errLineage, name)
		}
	}
	return out, nil
}

// copyFormat is the row format of a COPY TO. unsupported is set for
// options the proxy does not parse (binary, another quote or NULL text).
type copyFormat struct {
	csv         bool
	header      bool
	delimiter   byte
	unsupported bool
}

// parseCopyOptions reads FORMAT, HEADER and DELIMITER. Any other option
// (QUOTE, ESCAPE, NULL, FORCE_QUOTE, ENCODING) or value marks the format
// unsupported, so masked columns in it are rejected.
func parseCopyOptions(opts []*pg_query.Node) copyFormat {
	f := copyFormat{delimiter: '\t'}
	delimiterSet := false
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil {
			f.unsupported = true
			continue
		}
		value := strings.ToLower(defElemText(d.Arg))
		switch d.Defname {
		case "format":
			switch value {
			case "text":
			case "csv":
				f.csv = true
			default:
				f.unsupported = true
			}
		case "header":
			switch value {
			case "", "true", "on", "1":
				f.header = true
			case "false", "off", "0":
			default:
				f.unsupported = true
			}
		case "delimiter":
			if len(value) != 1 {
				f.unsupported = true
				continue
			}
			f.delimiter, delimiterSet = defElemText(d.Arg)[0], true
		default:
			f.unsupported = true
		}
	}
	if f.csv && !delimiterSet {
		f.delimiter = ','
	}
	return f
}

func defElemText(n *pg_query.Node) string {
	switch {
	case n == nil:
		return ""
	case n.GetString_() != nil:
		return n.GetString_().GetSval()
	case n.GetBoolean() != nil:
		if n.GetBoolean().GetBoolval() {
			return "true"
		}
		return "false"
	case n.GetInteger() != nil:
		return fmt.Sprint(n.GetInteger().GetIval())
	case n.GetAConst() != nil:
		c := n.GetAConst()
		switch {
		case c.GetSval() != nil:
			return c.GetSval().GetSval()
		case c.GetIval() != nil:
			return fmt.Sprint(c.GetIval().GetIval())
		case c.GetBoolval() != nil:
			if c.GetBoolval().GetBoolval() {
				return "true"
			}
			return "false"
		}
	}
	return "\x00unsupported"
}

// statementName returns a name such as "UpdateStmt" for messages.
func statementName(n *pg_query.Node) string {
	name := fmt.Sprintf("%T", n.GetNode())
	name = strings.TrimPrefix(name, "*pg_query.Node_")
	return name
}
