package pgproxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// relation is the catalog entry of one table, view or other relation.
type relation struct {
	OID    uint32
	Schema string
	Name   string
	// RootSchema and RootName name the top ancestor of a partition or an
	// inheritance child, whose rules apply to it. For other relations they
	// repeat Schema and Name.
	//
	// NOTE: with multiple inheritance one of the top ancestors is chosen.
	RootSchema string
	RootName   string
	// Kind is pg_class.relkind: r table, p partitioned table, v view,
	// m materialized view, f foreign table, and so on.
	Kind byte
	// Columns are the names of the live columns in attnum order; Attnums
	// holds their numbers, which skip dropped columns.
	Columns []string
	Attnums []int16
	// Definition is the SELECT of a view or materialized view.
	Definition string
	// Generated holds, per column, the expression of a generated column
	// or "".
	Generated []string

	// lineage caches relationColumns, because tracing a view parses its
	// definition. Callers clone the slice and do not change the maps.
	mu         sync.Mutex
	traced     bool
	lineage    []outputColumn
	statsViews []string
	traceErr   error
}

// columnIndex returns the position in Columns of attnum, or -1.
func (r *relation) columnIndex(attnum int16) int {
	for i, a := range r.Attnums {
		if a == attnum {
			return i
		}
	}
	return -1
}

// catalogSource resolves names and OIDs to relations. Implementations are
// safe for concurrent use.
type catalogSource interface {
	// relationByName returns the relation, or nil when none has the name.
	// An empty schema means the upstream search_path.
	relationByName(ctx context.Context, schema, name string) (*relation, error)
	relationByOID(ctx context.Context, oid uint32) (*relation, error)
	// userFunction reports whether a function of this name exists outside
	// pg_catalog, so a call to it might read any table.
	userFunction(ctx context.Context, name string) (bool, error)
	// userOperator reports the same for an operator, whose function
	// might read any table.
	userOperator(ctx context.Context, name string) (bool, error)
}

// catalogTTL is how long catalog results, statement analyses and plans are
// cached, so DDL made directly upstream (a redefined view, a renamed table,
// a new column) is seen within seconds. Until then a redefined view keeps
// its old lineage, so the window is kept short: refilling costs a few
// catalog queries per relation and server every few seconds. Prepared
// statements are traced again at Bind once their trace is this old
// (refreshStatement).
const catalogTTL = 5 * time.Second

// pgCatalog reads the upstream catalog over its own small pool of
// connections and caches the results for catalogTTL. Until an entry
// expires, a new column of a cached relation has no known origin and is
// redacted.
type pgCatalog struct {
	pool *pgxpool.Pool
	// timeout bounds each catalog query, so a hung upstream fails the
	// statement instead of stalling the session forever.
	timeout time.Duration
	clock   func() time.Time

	mu     sync.Mutex
	filled time.Time // when the maps were last emptied
	byOID  map[uint32]*relation
	byName map[string]*relation
	funcs  map[string]bool
}

var _ catalogSource = (*pgCatalog)(nil)

func newPGCatalog(pool *pgxpool.Pool, timeout time.Duration, clock func() time.Time) *pgCatalog {
	return &pgCatalog{pool: pool, timeout: timeout, clock: clock, filled: clock(),
		byOID: map[uint32]*relation{}, byName: map[string]*relation{}, funcs: map[string]bool{}}
}

// lock locks c and empties its maps when they are older than catalogTTL.
func (c *pgCatalog) lock() {
	c.mu.Lock()
	if now := c.clock(); now.Sub(c.filled) >= catalogTTL {
		c.reset(now)
	}
}

// reset empties the maps as of now. c.mu is held.
func (c *pgCatalog) reset(now time.Time) {
	clear(c.byOID)
	clear(c.byName)
	clear(c.funcs)
	c.filled = now
}

const relationQuery = `
SELECT c.oid, n.nspname, c.relname, coalesce(rn.nspname, n.nspname), coalesce(r.relname, c.relname), c.relkind::text,
       coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attnum > 0), '{}'),
       coalesce(array_agg(a.attnum ORDER BY a.attnum) FILTER (WHERE a.attnum > 0), '{}'),
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) ELSE '' END,
       coalesce(array_agg(coalesce(pg_get_expr(ad.adbin, ad.adrelid), '') ORDER BY a.attnum) FILTER (WHERE a.attnum > 0), '{}')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (
    WITH RECURSIVE up(oid, depth) AS (
        SELECT c.oid, 0
        UNION ALL
        SELECT i.inhparent, up.depth + 1 FROM pg_inherits i JOIN up ON i.inhrelid = up.oid WHERE up.depth < 32)
    SELECT oid FROM up ORDER BY depth DESC LIMIT 1) root ON true
LEFT JOIN pg_class r ON r.oid = root.oid
LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum AND a.attgenerated <> ''
WHERE c.oid = $1
GROUP BY c.oid, n.nspname, c.relname, rn.nspname, r.relname, c.relkind`

func (c *pgCatalog) relationByOID(ctx context.Context, oid uint32) (*relation, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	c.lock()
	r, ok := c.byOID[oid]
	c.mu.Unlock()
	if ok {
		return r, nil
	}

	r = &relation{}
	var kind string
	err := c.pool.QueryRow(ctx, relationQuery, oid).Scan(&r.OID, &r.Schema, &r.Name, &r.RootSchema, &r.RootName, &kind, &r.Columns, &r.Attnums, &r.Definition, &r.Generated)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading catalog for relation %d: %w", oid, err)
	}
	if kind != "" {
		r.Kind = kind[0]
	}
	c.lock()
	c.byOID[oid] = r
	c.mu.Unlock()
	return r, nil
}

func (c *pgCatalog) relationByName(ctx context.Context, schema, name string) (*relation, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	key := schema + "." + name
	c.lock()
	r, ok := c.byName[key]
	c.mu.Unlock()
	if ok {
		return r, nil
	}

	qualified := pgx.Identifier{name}.Sanitize()
	if schema != "" {
		qualified = pgx.Identifier{schema, name}.Sanitize()
	}
	var oid *uint32
	if err := c.pool.QueryRow(ctx, `SELECT to_regclass($1)::oid`, qualified).Scan(&oid); err != nil {
		return nil, fmt.Errorf("resolving relation %s: %w", qualified, err)
	}
	if oid == nil {
		return nil, nil
	}
	r, err := c.relationByOID(ctx, *oid)
	if err != nil || r == nil {
		return r, err
	}
	c.lock()
	c.byName[key] = r
	c.mu.Unlock()
	return r, nil
}

// Functions and operators that belong to an extension (pg_depend type 'e')
// are trusted like built-ins: extensions such as citext define common
// names like "=", and treating them as user code would redact most
// expressions.
func (c *pgCatalog) userFunction(ctx context.Context, name string) (bool, error) {
	return c.userObject(ctx, "function "+name, name, `
SELECT EXISTS (
    SELECT 1 FROM pg_proc p
    WHERE p.proname = $1 AND p.pronamespace <> 'pg_catalog'::regnamespace
      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'))`)
}

func (c *pgCatalog) userOperator(ctx context.Context, name string) (bool, error) {
	return c.userObject(ctx, "operator "+name, name, `
SELECT EXISTS (
    SELECT 1 FROM pg_operator o
    WHERE o.oprname = $1 AND o.oprnamespace <> 'pg_catalog'::regnamespace
      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_operator'::regclass AND d.objid = o.oid AND d.deptype = 'e'))`)
}

// userObject runs query, which tests whether name exists outside
// pg_catalog, and caches the result under key.
func (c *pgCatalog) userObject(ctx context.Context, key, name, query string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	c.lock()
	found, ok := c.funcs[key]
	c.mu.Unlock()
	if ok {
		return found, nil
	}
	if err := c.pool.QueryRow(ctx, query, name).Scan(&found); err != nil {
		return false, fmt.Errorf("looking up %s: %w", key, err)
	}
	c.lock()
	c.funcs[key] = found
	c.mu.Unlock()
	return found, nil
}
