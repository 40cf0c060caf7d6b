package static

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"ward.dev/ward/masking/rules"
)

const catalogColumnsSQL = `
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
ORDER BY n.nspname, c.relname, a.attnum`

// Ordinary tables without a column COPY can load: created with no columns
// or with generated ones only. Their rows still count.
const catalogEmptyTablesSQL = `
SELECT n.nspname, c.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_attribute a
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '')`

// Unique indexes (primary keys and UNIQUE constraints have one) on a single
// plain column.
const catalogUniqueSQL = `
SELECT n.nspname, c.relname, a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
WHERE i.indisunique AND i.indnatts = 1 AND i.indexprs IS NULL AND i.indpred IS NULL
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'`

const catalogForeignKeySQL = `
SELECT fn.nspname, fc.relname, fa.attname, tn.nspname, tc.relname, ta.attname
FROM pg_constraint k
CROSS JOIN LATERAL unnest(k.conkey, k.confkey) AS u(fk, pk)
JOIN pg_class fc ON fc.oid = k.conrelid
JOIN pg_namespace fn ON fn.oid = fc.relnamespace
JOIN pg_attribute fa ON fa.attrelid = k.conrelid AND fa.attnum = u.fk
JOIN pg_class tc ON tc.oid = k.confrelid
JOIN pg_namespace tn ON tn.oid = tc.relnamespace
JOIN pg_attribute ta ON ta.attrelid = k.confrelid AND ta.attnum = u.pk
WHERE k.contype = 'f'`

// Each ordinary partition with the root of its partition tree.
const catalogPartitionSQL = `
SELECT n.nspname, c.relname, rn.nspname, r.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class r ON r.oid = pg_partition_root(c.oid)
JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.relispartition AND c.relkind = 'r'`

// ReadCatalog reads the ordinary tables of the connected database (every
// schema but the system ones): columns in order with types and NOT NULL,
// single-column unique indexes, partitions with their partitioned table,
// and foreign keys. Generated columns are
// left out because COPY cannot load them.
func ReadCatalog(ctx context.Context, conn *pgx.Conn) (*rules.Catalog, error) {
	cat := &rules.Catalog{Tables: map[string][]rules.ColumnInfo{}}

	rows, err := conn.Query(ctx, catalogColumnsSQL)
	if err != nil {
		return nil, fmt.Errorf("reading columns: %w", err)
	}
	for rows.Next() {
		var ci rules.ColumnInfo
		if err := rows.Scan(&ci.Column.Schema, &ci.Column.Table, &ci.Column.Name, &ci.Type, &ci.NotNull); err != nil {
			return nil, err
		}
		key := ci.Column.TableName()
		cat.Tables[key] = append(cat.Tables[key], ci)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading columns: %w", err)
	}

	rows, err = conn.Query(ctx, catalogEmptyTablesSQL)
	if err != nil {
		return nil, fmt.Errorf("reading tables without columns: %w", err)
	}
	for rows.Next() {
		var schema, table string
		if err := rows.Scan(&schema, &table); err != nil {
			return nil, err
		}
		cat.Tables[schema+"."+table] = []rules.ColumnInfo{}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading tables without columns: %w", err)
	}

	rows, err = conn.Query(ctx, catalogUniqueSQL)
	if err != nil {
		return nil, fmt.Errorf("reading unique indexes: %w", err)
	}
	for rows.Next() {
		var schema, table, col string
		if err := rows.Scan(&schema, &table, &col); err != nil {
			return nil, err
		}
		markUnique(cat, schema+"."+table, col)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading unique indexes: %w", err)
	}

	rows, err = conn.Query(ctx, catalogPartitionSQL)
	if err != nil {
		return nil, fmt.Errorf("reading partitions: %w", err)
	}
	for rows.Next() {
		var ps, pt, rs, rt string
		if err := rows.Scan(&ps, &pt, &rs, &rt); err != nil {
			return nil, err
		}
		if cat.Partitions == nil {
			cat.Partitions = map[string]string{}
		}
		cat.Partitions[ps+"."+pt] = rs + "." + rt
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading partitions: %w", err)
	}

	rows, err = conn.Query(ctx, catalogForeignKeySQL)
	if err != nil {
		return nil, fmt.Errorf("reading foreign keys: %w", err)
	}
	for rows.Next() {
		var fk rules.ForeignKey
		if err := rows.Scan(&fk.From.Schema, &fk.From.Table, &fk.From.Name, &fk.To.Schema, &fk.To.Table, &fk.To.Name); err != nil {
			return nil, err
		}
		cat.ForeignKeys = append(cat.ForeignKeys, fk)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading foreign keys: %w", err)
	}
	return cat, nil
}
