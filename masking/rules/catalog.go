package rules

import (
	"regexp"
	"strconv"
	"strings"

	"ward.dev/ward/masking/transform"
)

// ColumnInfo describes one column of the catalog.
type ColumnInfo struct {
	Column Column
	// Type is the PostgreSQL type as format_type prints it, such as
	// "character varying(40)" or "integer[]".
	Type    string
	NotNull bool
	// Unique is true when the column alone is a primary key or has a
	// UNIQUE constraint or index.
	Unique bool
}

// ForeignKey is one column of a foreign key: From references To.
type ForeignKey struct {
	From, To Column
}

// Catalog describes the tables rules apply to. Tables keep their column
// order. The zero Catalog has no tables, for files without a schema. This
// package only reads a Catalog, so concurrent reads are safe.
type Catalog struct {
	Tables      map[string][]ColumnInfo // by schema.table
	ForeignKeys []ForeignKey
	// Partitions maps each partition (schema.table) to the partitioned
	// table at the root of its tree, whose rules apply to it.
	Partitions map[string]string
}

// Lookup returns the column's information and whether the catalog has it.
// A column of a partitioned table is looked up in one of its partitions.
func (c *Catalog) Lookup(col Column) (ColumnInfo, bool) {
	if c == nil {
		return ColumnInfo{}, false
	}
	for _, ci := range c.Tables[col.TableName()] {
		if ci.Name() == col.Name {
			return ci, true
		}
	}
	for part, root := range c.Partitions {
		if root != col.TableName() {
			continue
		}
		schema, table, _ := strings.Cut(part, ".")
		if ci, ok := c.Lookup(Column{Schema: schema, Table: table, Name: col.Name}); ok {
			ci.Column = col
			return ci, true
		}
	}
	return ColumnInfo{}, false
}

// rootColumn returns the same column of the partitioned table at the root
// of col's partition tree, or col itself when its table is no partition.
func (c *Catalog) rootColumn(col Column) Column {
	if c == nil {
		return col
	}
	if root, ok := c.Partitions[col.TableName()]; ok {
		schema, table, _ := strings.Cut(root, ".")
		return Column{Schema: schema, Table: table, Name: col.Name}
	}
	return col
}

// HasTable reports whether the catalog has the table, as a table or as
// the root of partitions.
func (c *Catalog) HasTable(name string) bool {
	if c == nil {
		return false
	}
	if _, ok := c.Tables[name]; ok {
		return true
	}
	for _, root := range c.Partitions {
		if root == name {
			return true
		}
	}
	return false
}

// Name returns the column name.
func (ci ColumnInfo) Name() string { return ci.Column.Name }

// Kind returns the transformer kind of the column's type; an array has the
// kind of its element. JSON and unknown types are text.
func (ci ColumnInfo) Kind() transform.Kind {
	t := strings.TrimSuffix(ci.Type, "[]")
	switch {
	case strings.HasPrefix(t, "timestamp"), t == "date":
		return transform.KindDate
	case strings.Contains(t, "int"), strings.HasPrefix(t, "numeric"), strings.HasPrefix(t, "decimal"),
		t == "real", t == "double precision", t == "money":
		return transform.KindNumeric
	default:
		return transform.KindText
	}
}

// IsArray reports whether the column is an array.
func (ci ColumnInfo) IsArray() bool { return strings.HasSuffix(ci.Type, "[]") }

// IsJSON reports whether the column is json or jsonb.
func (ci ColumnInfo) IsJSON() bool { return ci.Type == "json" || ci.Type == "jsonb" }

var lengthRe = regexp.MustCompile(`^(character varying|varchar|character|char|bpchar)\((\d+)\)$`)

// MaxLen returns the declared maximum length in characters, or -1.
func (ci ColumnInfo) MaxLen() int {
	m := lengthRe.FindStringSubmatch(ci.Type)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[2])
	return n
}
