// Package static makes masked copies of data: files (CSV, TSV, JSON Lines,
// plain-SQL pg_dump output) and PostgreSQL databases. Values pass through
// the transformers of a compiled rules plan row by row, so memory stays
// constant however large the input is (except for the collision set of
// fake on unique columns).
//
// Nothing is left half-done. A file is written under a temporary name and
// renamed into place only after the last row. A database copy commits its
// loading transactions only when every table is loaded, and on failure
// drops the objects it created. Errors name file:line or table and row,
// never the value.
//
// This package logs progress (tables and row counts) through an injected
// slog.Logger and never logs a value.
package static

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Format is an input file format.
type Format string

// File formats.
const (
	FormatCSV    Format = "csv"
	FormatTSV    Format = "tsv"
	FormatJSONL  Format = "jsonl"
	FormatPGDump Format = "pgdump"
)

// ErrFormat means the file format is unknown or the input does not follow it.
var ErrFormat = errors.New("malformed input")

// DetectFormat returns the format that path's extension implies: .csv,
// .tsv, .jsonl or .ndjson, and .sql for pg_dump plain output.
func DetectFormat(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return FormatCSV, nil
	case ".tsv", ".tab":
		return FormatTSV, nil
	case ".jsonl", ".ndjson":
		return FormatJSONL, nil
	case ".sql":
		return FormatPGDump, nil
	}
	return "", fmt.Errorf("%w: cannot tell the format of %s from its extension; pass --format csv, tsv, jsonl or pgdump", ErrFormat, path)
}

// ParseFormat checks a --format value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatCSV, FormatTSV, FormatJSONL, FormatPGDump:
		return f, nil
	}
	return "", fmt.Errorf("%w: format %q is unknown, want csv, tsv, jsonl or pgdump", ErrFormat, s)
}

// RowError locates a failure: file:line for files, table and row number
// (1-based, data rows only) for both.
type RowError struct {
	File  string
	Line  int64
	Table string
	Row   int64
	Err   error
}

func (e *RowError) Error() string {
	var b strings.Builder
	if e.File != "" {
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	}
	if e.Table != "" {
		fmt.Fprintf(&b, "table %s row %d: ", e.Table, e.Row)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *RowError) Unwrap() error { return e.Err }

// Stats counts what a masking run did. It is not safe for concurrent use.
type Stats struct {
	Tables map[string]int64 `json:"tables"` // rows per schema.table
}

func (s *Stats) add(table string, rows int64) {
	if s.Tables == nil {
		s.Tables = map[string]int64{}
	}
	s.Tables[table] += rows
}

// atomicFile is an output file written under a temporary name in the
// target's directory and renamed into place by Commit.
type atomicFile struct {
	*os.File
	path string
	done bool
}

func createAtomic(path string) (*atomicFile, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	return &atomicFile{File: f, path: path}, nil
}

// Commit syncs the file and renames it to its final name.
func (a *atomicFile) Commit() error {
	if err := a.Sync(); err != nil {
		return err
	}
	if err := a.Close(); err != nil {
		return err
	}
	if err := os.Rename(a.Name(), a.path); err != nil {
		return err
	}
	a.done = true
	return nil
}

// Abort removes the temporary file unless Commit succeeded.
func (a *atomicFile) Abort() {
	if a.done {
		return
	}
	a.Close()
	os.Remove(a.Name())
}

// splitTable parses schema.table, defaulting the schema to public.
func splitTable(name string) (schema, table string) {
	if s, t, ok := strings.Cut(name, "."); ok {
		return s, t
	}
	return "public", name
}
