package static

import (
	"bufio"
	"io"
	"regexp"
	"strings"

	"ward.dev/ward/masking/rules"
)

// ScanDumpCatalog reads the table definitions of a plain SQL script such
// as pg_dump output. It takes the CREATE TABLE column lists with types and
// NOT NULL, and single-column primary keys, UNIQUE constraints and unique
// indexes. It also takes foreign keys, inline or added by ALTER TABLE.
// COPY data blocks are skipped. Unqualified names are in schema public.
//
// NOTE: this reads the statements pg_dump writes, not all of SQL: quoted
// identifiers lose their quotes, and a definition inside a function body
// would be taken for a real one.
func ScanDumpCatalog(r io.Reader) (*rules.Catalog, error) {
	cat := &rules.Catalog{Tables: map[string][]rules.ColumnInfo{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	var stmt strings.Builder
	inCopy := false
	for sc.Scan() {
		line := sc.Text()
		if inCopy {
			inCopy = line != `\.`
			continue
		}
		if copyRe.MatchString(line) {
			inCopy = true
			continue
		}
		trimmed := strings.TrimSpace(line)
		if stmt.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "--")) {
			continue
		}
		if i := strings.Index(line, "--"); i >= 0 && !strings.Contains(line[:i], "'") {
			line = line[:i]
		}
		stmt.WriteString(line)
		stmt.WriteByte('\n')
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			addStatement(cat, stmt.String())
			stmt.Reset()
		}
	}
	return cat, sc.Err()
}

var (
	createTableRe = regexp.MustCompile(`(?is)^\s*CREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(` + qualifiedPattern + `)\s*\((.*)\)\s*(?:PARTITION\s+BY\s+[^;]*)?;\s*$`)
	attachRe      = regexp.MustCompile(`(?is)^\s*ALTER\s+TABLE\s+(?:ONLY\s+)?(` + qualifiedPattern + `)\s+ATTACH\s+PARTITION\s+(` + qualifiedPattern + `)\s`)
	alterTableRe  = regexp.MustCompile(`(?is)^\s*ALTER\s+TABLE\s+(?:ONLY\s+)?([\w."]+)\s+ADD\s+(?:CONSTRAINT\s+[\w"]+\s+)?(.*);\s*$`)
	uniqueIndexRe = regexp.MustCompile(`(?is)^\s*CREATE\s+UNIQUE\s+INDEX\s+[\w"]+\s+ON\s+(?:ONLY\s+)?([\w."]+)\s+(?:USING\s+\w+\s+)?\(([\w"]+)\)`)
	primaryRe     = regexp.MustCompile(`(?is)^(?:CONSTRAINT\s+[\w"]+\s+)?(PRIMARY\s+KEY|UNIQUE)\s*\(([^)]*)\)`)
	foreignRe     = regexp.MustCompile(`(?is)^(?:CONSTRAINT\s+[\w"]+\s+)?FOREIGN\s+KEY\s*\(([^)]*)\)\s*REFERENCES\s+([\w."]+)\s*\(([^)]*)\)`)
	copyRe        = regexp.MustCompile(`(?i)^COPY\s+(` + qualifiedPattern + `)\s*(?:\((.*)\))?\s+FROM\s+stdin;$`)
	inlineRefRe   = regexp.MustCompile(`(?is)REFERENCES\s+([\w."]+)\s*\(([^)]*)\)`)
	notNullRe     = regexp.MustCompile(`(?i)\bNOT\s+NULL\b`)
	typeEndWords  = []string{"NOT", "NULL", "DEFAULT", "PRIMARY", "UNIQUE", "REFERENCES", "CONSTRAINT", "CHECK", "COLLATE", "GENERATED"}
)

// unquote returns one identifier without its quotes.
func unquote(s string) string {
	if parts, err := splitIdents(s, 0); err == nil && len(parts) == 1 {
		return parts[0]
	}
	return strings.TrimSpace(s)
}

// qualify returns schema.table for a possibly unqualified name, for table
// definitions; a malformed name is returned as written and matches nothing.
func qualify(name string) string {
	if q, err := qualifiedName(name); err == nil {
		return q
	}
	return name
}

// splitNames splits a column list of a table definition.
func splitNames(list string) []string {
	names, err := splitIdents(list, ',')
	if err != nil {
		return nil
	}
	return names
}

// splitTopLevel splits s at commas outside parentheses.
func splitTopLevel(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

func addStatement(cat *rules.Catalog, stmt string) {
	if m := createTableRe.FindStringSubmatch(stmt); m != nil {
		table := qualify(m[1])
		schema, name := splitTable(table)
		for _, part := range splitTopLevel(m[2]) {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if addConstraint(cat, table, part) {
				continue
			}
			ci := parseColumnDef(schema, name, part)
			cat.Tables[table] = append(cat.Tables[table], ci)
			// Inline constraints on the column itself.
			up := strings.ToUpper(part)
			if strings.Contains(up, "PRIMARY KEY") || strings.Contains(up, " UNIQUE") {
				markUnique(cat, table, ci.Column.Name)
			}
			if i := strings.Index(up, "REFERENCES"); i >= 0 {
				if fm := inlineRefRe.FindStringSubmatch(part[i:]); fm != nil {
					addForeignKey(cat, table, []string{ci.Column.Name}, fm[1], splitNames(fm[2]))
				}
			}
		}
		return
	}
	if m := attachRe.FindStringSubmatch(stmt); m != nil {
		if cat.Partitions == nil {
			cat.Partitions = map[string]string{}
		}
		cat.Partitions[qualify(m[2])] = qualify(m[1])
		return
	}
	if m := alterTableRe.FindStringSubmatch(stmt); m != nil {
		addConstraint(cat, qualify(m[1]), strings.TrimSpace(m[2]))
		return
	}
	if m := uniqueIndexRe.FindStringSubmatch(stmt); m != nil {
		markUnique(cat, qualify(m[1]), unquote(m[2]))
	}
}

// addConstraint records a table constraint and reports whether part was one.
func addConstraint(cat *rules.Catalog, table, part string) bool {
	if m := primaryRe.FindStringSubmatch(part); m != nil {
		if cols := splitNames(m[2]); len(cols) == 1 {
			markUnique(cat, table, cols[0])
		}
		if strings.EqualFold(strings.Fields(m[1])[0], "PRIMARY") {
			for _, c := range splitNames(m[2]) {
				markNotNull(cat, table, c)
			}
		}
		return true
	}
	if m := foreignRe.FindStringSubmatch(part); m != nil {
		addForeignKey(cat, table, splitNames(m[1]), m[2], splitNames(m[3]))
		return true
	}
	up := strings.ToUpper(part)
	return strings.HasPrefix(up, "CONSTRAINT") || strings.HasPrefix(up, "CHECK") || strings.HasPrefix(up, "EXCLUDE")
}

func addForeignKey(cat *rules.Catalog, table string, from []string, refTable string, to []string) {
	if len(from) != len(to) {
		return
	}
	fs, ft := splitTable(table)
	ts, tt := splitTable(qualify(refTable))
	for i := range from {
		cat.ForeignKeys = append(cat.ForeignKeys, rules.ForeignKey{
			From: rules.Column{Schema: fs, Table: ft, Name: from[i]},
			To:   rules.Column{Schema: ts, Table: tt, Name: to[i]},
		})
	}
}

func markUnique(cat *rules.Catalog, table, col string) {
	for i := range cat.Tables[table] {
		if cat.Tables[table][i].Column.Name == col {
			cat.Tables[table][i].Unique = true
		}
	}
}

func markNotNull(cat *rules.Catalog, table, col string) {
	for i := range cat.Tables[table] {
		if cat.Tables[table][i].Column.Name == col {
			cat.Tables[table][i].NotNull = true
		}
	}
}

// parseColumnDef parses "name type [constraints]".
func parseColumnDef(schema, table, def string) rules.ColumnInfo {
	fields := strings.Fields(def)
	ci := rules.ColumnInfo{Column: rules.Column{Schema: schema, Table: table, Name: unquote(fields[0])}}
	var typ []string
	for _, f := range fields[1:] {
		stop := false
		for _, w := range typeEndWords {
			if strings.EqualFold(f, w) {
				stop = true
			}
		}
		if stop {
			break
		}
		typ = append(typ, f)
	}
	ci.Type = normalizeType(strings.Join(typ, " "))
	ci.NotNull = notNullRe.MatchString(def)
	return ci
}

var typeAliases = map[string]string{
	"int": "integer", "int4": "integer", "int8": "bigint", "int2": "smallint", "serial": "integer",
	"bigserial": "bigint", "float8": "double precision", "float4": "real", "bool": "boolean",
	"timestamp": "timestamp without time zone", "timestamptz": "timestamp with time zone",
}

// normalizeType spells a type as PostgreSQL's format_type does, for the
// types whose spelling rules depend on.
func normalizeType(t string) string {
	t = strings.ToLower(strings.Join(strings.Fields(t), " "))
	if a, ok := typeAliases[t]; ok {
		return a
	}
	if rest, ok := strings.CutPrefix(t, "varchar"); ok {
		return "character varying" + strings.TrimSpace(rest)
	}
	return strings.ReplaceAll(t, ", ", ",")
}
