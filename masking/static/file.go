package static

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/transform"
)

// FileOptions configures MaskFile.
type FileOptions struct {
	Format Format
	// Table is schema.table for CSV, TSV and JSON Lines input. Empty means
	// public.<file name without extension>.
	Table string
	// Null is the CSV and TSV text for NULL; see CSVOptions.
	Null string
	// Catalog describes the tables for uniqueness, foreign keys and strict
	// mode. For pg_dump input it is read from the dump itself when nil.
	Catalog *rules.Catalog
}

// MaskFile masks the file at in into out. out is written under a temporary
// name in its directory and renamed only when every row is masked, so on
// error no output file exists. in and out must differ.
func MaskFile(rs *rules.Ruleset, keys *transform.Keys, in, out string, opts FileOptions) (*Stats, error) {
	if abs(in) == abs(out) {
		return nil, fmt.Errorf("input and output are the same file %s", in)
	}
	catalog := opts.Catalog
	if opts.Format == FormatPGDump && catalog == nil {
		var err error
		if catalog, err = scanDumpFile(in); err != nil {
			return nil, err
		}
	}
	plan, err := rules.Compile(rs, catalog, keys)
	if err != nil {
		return nil, err
	}
	if opts.Format == FormatPGDump {
		if err := plan.CheckTables(); err != nil {
			return nil, err
		}
	}

	src, err := os.Open(in)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	dst, err := createAtomic(out)
	if err != nil {
		return nil, err
	}
	defer dst.Abort()

	stats := &Stats{}
	w := bufio.NewWriterSize(dst, 64<<10)
	if err := maskStream(src, w, plan, catalog, in, opts, stats); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	if err := dst.Commit(); err != nil {
		return nil, err
	}
	return stats, nil
}

func maskStream(r io.Reader, w io.Writer, plan *rules.Plan, catalog *rules.Catalog, name string, opts FileOptions, stats *Stats) error {
	table := opts.Table
	if table == "" {
		base := filepath.Base(name)
		table = "public." + strings.TrimSuffix(base, filepath.Ext(base))
	}
	switch opts.Format {
	case FormatCSV, FormatTSV, FormatJSONL:
		// One table per file: a rules file that never names it most likely
		// meets the wrong --table, and would copy every value unmasked.
		if schema, tbl := splitTable(table); !plan.Covers(schema, tbl) {
			return fmt.Errorf("%s: no rule names a column of table %s and the default is keep; pass the right --table schema.table", name, table)
		}
	}
	switch opts.Format {
	case FormatCSV, FormatTSV:
		comma := ','
		if opts.Format == FormatTSV {
			comma = '\t'
		}
		n, err := MaskCSV(r, w, plan, CSVOptions{Table: table, Comma: comma, Null: opts.Null, File: name})
		stats.add(table, n)
		return err
	case FormatJSONL:
		n, err := MaskJSONL(r, w, plan, table, name)
		stats.add(table, n)
		return err
	case FormatPGDump:
		return MaskDump(r, w, plan, catalog, name, stats)
	}
	return fmt.Errorf("%w: format %q", ErrFormat, opts.Format)
}

func scanDumpFile(path string) (*rules.Catalog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ScanDumpCatalog(f)
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
