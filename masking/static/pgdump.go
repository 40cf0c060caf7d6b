package static

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"

	"ward.dev/ward/masking/rules"
)

// MaxStatement bounds one INSERT statement of a dump, in bytes.
const MaxStatement = 256 << 20

var insertRe = regexp.MustCompile(`(?is)^INSERT\s+INTO\s+(` + qualifiedPattern + `)\s*(?:\(((?:"(?:[^"]|"")*"|[^)"])*)\))?\s*VALUES\s*`)

// dataStatementRe finds, anywhere in a line, a statement that writes rows:
// COPY ... FROM stdin, INSERT INTO, UPDATE ... SET, or CREATE TABLE ... AS.
var dataStatementRe = regexp.MustCompile(`(?i)\b(copy\s.*\bfrom\s+stdin|insert\s+into|update\s+\S+\s+set|create\s+(?:(?:temp|temporary|unlogged)\s+)?table\s+\S+\s+as)\b`)

// copyStartRe matches any COPY ... FROM stdin line, so that one copyRe
// cannot read stops the run instead of passing its rows through unmasked.
var copyStartRe = regexp.MustCompile(`(?i)^\s*COPY\s.*\bFROM\s+stdin\b`)

// insertStartRe matches the start of an INSERT statement in any case.
var insertStartRe = regexp.MustCompile(`(?i)^\s*INSERT\s+INTO\s`)

// MaskDump masks a plain SQL script such as pg_dump output (pg_dump
// --format=plain, with or without --inserts): the rows of COPY ... FROM
// stdin blocks and of INSERT statements. Every other line is copied as it
// is. catalog supplies column order for INSERT statements without a column
// list; it may be nil. file names the input in errors.
func MaskDump(r io.Reader, w io.Writer, plan *rules.Plan, catalog *rules.Catalog, file string, stats *Stats) error {
	if stats == nil {
		stats = &Stats{}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	bw := bufio.NewWriterSize(w, 64<<10)
	d := &dumpMasker{plan: plan, catalog: catalog, file: file, out: bw, stats: stats}

	for sc.Scan() {
		d.line++
		if err := d.feed(sc.Text()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return &RowError{File: file, Line: d.line + 1, Err: fmt.Errorf("%w: %w", ErrFormat, err)}
	}
	if d.copyTable != nil {
		return &RowError{File: file, Line: d.line, Table: d.copyTable.Name(), Err: fmt.Errorf(`%w: COPY data ends without \.`, ErrFormat)}
	}
	if d.insert.Len() > 0 {
		return &RowError{File: file, Line: d.insertLine, Err: fmt.Errorf("%w: INSERT statement ends without ;", ErrFormat)}
	}
	return bw.Flush()
}

type dumpMasker struct {
	plan    *rules.Plan
	catalog *rules.Catalog
	file    string
	out     *bufio.Writer
	stats   *Stats
	line    int64

	copyTable *rules.Table
	copyRows  int64
	row       []rules.Field
	buf       []byte

	insert     strings.Builder
	insertLine int64
}

func (d *dumpMasker) feed(line string) error {
	switch {
	case d.copyTable != nil:
		return d.copyLine(line)
	case d.insert.Len() > 0 || insertStartRe.MatchString(line):
		return d.insertPart(line)
	}
	if m := copyRe.FindStringSubmatch(line); m != nil {
		if err := d.openCopy(m[1], m[2]); err != nil {
			return err
		}
	} else if copyStartRe.MatchString(line) {
		return &RowError{File: d.file, Line: d.line, Err: fmt.Errorf("%w: cannot read the table or columns of this COPY statement", ErrFormat)}
	} else if m := dataStatementRe.FindString(line); m != "" && !strings.HasPrefix(strings.TrimSpace(line), "--") {
		// A statement that writes rows but does not start its line (after a
		// comment or another statement), or an UPDATE or CREATE TABLE AS,
		// is not one this masker reads: copying it through could carry
		// values out unmasked, so the file is refused instead.
		return &RowError{File: d.file, Line: d.line, Err: fmt.Errorf("%w: cannot mask %q here; put each COPY or INSERT at the start of its own line, and leave out UPDATE and CREATE TABLE AS", ErrFormat, strings.TrimSpace(m))}
	}
	d.out.WriteString(line)
	return d.out.WriteByte('\n')
}

func (d *dumpMasker) openCopy(name, cols string) error {
	qualified, err := qualifiedName(name)
	if err != nil {
		return &RowError{File: d.file, Line: d.line, Err: fmt.Errorf("%w: COPY table name: %w", ErrFormat, err)}
	}
	schema, table := splitTable(qualified)
	columns, err := splitIdents(cols, ',')
	if cols == "" {
		columns, err = d.catalogColumns(schema+"."+table), nil
	}
	if err != nil {
		return &RowError{File: d.file, Line: d.line, Err: fmt.Errorf("%w: COPY column list: %w", ErrFormat, err)}
	}
	tbl, err := d.plan.Table(schema, table, columns)
	if err != nil {
		return &RowError{File: d.file, Line: d.line, Err: err}
	}
	d.copyTable, d.copyRows = tbl, 0
	d.row = make([]rules.Field, 0, len(columns))
	return nil
}

func (d *dumpMasker) catalogColumns(table string) []string {
	if d.catalog == nil {
		return nil
	}
	var out []string
	for _, ci := range d.catalog.Tables[table] {
		out = append(out, ci.Column.Name)
	}
	return out
}

func (d *dumpMasker) copyLine(line string) error {
	if line == `\.` {
		d.stats.add(d.copyTable.Name(), d.copyRows)
		d.copyTable = nil
		d.out.WriteString(line)
		return d.out.WriteByte('\n')
	}
	d.copyRows++
	if !d.copyTable.Masks() {
		d.out.WriteString(line)
		return d.out.WriteByte('\n')
	}

	fail := func(err error) error {
		return &RowError{File: d.file, Line: d.line, Table: d.copyTable.Name(), Row: d.copyRows, Err: err}
	}
	row, err := decodeCopyRow(line, d.row)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrFormat, err))
	}
	if len(row) != len(d.copyTable.Columns()) {
		return fail(fmt.Errorf("%w: COPY line has %d fields, want %d", ErrFormat, len(row), len(d.copyTable.Columns())))
	}
	if err := d.copyTable.MaskRow(row); err != nil {
		return fail(err)
	}
	d.buf = appendCopyRow(d.buf[:0], row)
	_, err = d.out.Write(d.buf)
	return err
}

// insertPart collects the lines of one INSERT statement until the line
// that ends it with ";" outside a string literal, then masks it.
func (d *dumpMasker) insertPart(line string) error {
	if d.insert.Len() == 0 {
		d.insertLine = d.line
	}
	d.insert.WriteString(line)
	d.insert.WriteByte('\n')
	if d.insert.Len() > MaxStatement {
		return &RowError{File: d.file, Line: d.insertLine, Err: fmt.Errorf("%w: INSERT statement longer than %d bytes", ErrFormat, MaxStatement)}
	}
	stmt := d.insert.String()
	if !strings.HasSuffix(strings.TrimSpace(line), ";") || !quotesBalanced(stmt) {
		return nil
	}
	d.insert.Reset()
	masked, err := d.maskInsert(stmt)
	if err != nil {
		return err
	}
	_, err = d.out.WriteString(masked)
	return err
}

// quotesBalanced reports whether s ends outside a string literal.
func quotesBalanced(s string) bool {
	return strings.Count(s, "'")%2 == 0
}

func (d *dumpMasker) maskInsert(stmt string) (string, error) {
	m := insertRe.FindStringSubmatchIndex(strings.TrimLeft(stmt, " \t"))
	stmt = strings.TrimLeft(stmt, " \t")
	if m == nil {
		return "", &RowError{File: d.file, Line: d.insertLine, Err: fmt.Errorf("%w: cannot read INSERT statement", ErrFormat)}
	}
	qualified, err := qualifiedName(stmt[m[2]:m[3]])
	if err != nil {
		return "", &RowError{File: d.file, Line: d.insertLine, Err: fmt.Errorf("%w: INSERT table name: %w", ErrFormat, err)}
	}
	schema, table := splitTable(qualified)
	var columns []string
	if m[4] >= 0 {
		if columns, err = splitIdents(stmt[m[4]:m[5]], ','); err != nil {
			return "", &RowError{File: d.file, Line: d.insertLine, Err: fmt.Errorf("%w: INSERT column list: %w", ErrFormat, err)}
		}
	} else {
		columns = d.catalogColumns(schema + "." + table)
	}
	tbl, err := d.plan.Table(schema, table, columns)
	if err != nil {
		return "", &RowError{File: d.file, Line: d.insertLine, Err: err}
	}

	tuples, end, err := parseTuples(stmt, m[1])
	if err != nil {
		return "", &RowError{File: d.file, Line: d.insertLine, Table: tbl.Name(), Err: err}
	}
	var b strings.Builder
	b.Grow(len(stmt))
	b.WriteString(stmt[:m[1]])
	row := make([]rules.Field, len(columns))
	for i, tuple := range tuples {
		if i > 0 {
			b.WriteString(",\n    ")
		}
		if err := maskTuple(&b, tbl, tuple, row); err != nil {
			line := d.insertLine + int64(strings.Count(stmt[:tupleOffset(stmt, m[1], i)], "\n"))
			return "", &RowError{File: d.file, Line: line, Table: tbl.Name(), Row: d.stats.rows(tbl.Name()) + int64(i) + 1, Err: err}
		}
	}
	b.WriteString(stmt[end:])
	d.stats.add(tbl.Name(), int64(len(tuples)))
	return b.String(), nil
}

// tupleOffset returns roughly where tuple i starts, for error lines: the
// i-th "(" that begins a line or follows "VALUES".
func tupleOffset(stmt string, start, i int) int {
	off := start
	for n := 0; n < i; n++ {
		j := strings.Index(stmt[off:], "\n")
		if j < 0 {
			return off
		}
		off += j + 1
	}
	return off
}

func (s *Stats) rows(table string) int64 {
	if s == nil {
		return 0
	}
	return s.Tables[table]
}
