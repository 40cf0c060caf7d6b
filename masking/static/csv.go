package static

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"

	"ward.dev/ward/masking/rules"
)

// CSVOptions configures MaskCSV.
type CSVOptions struct {
	// Table is schema.table, whose rules apply to the columns the header
	// names.
	Table string
	// Comma is the field separator: ',' for CSV, '\t' for TSV.
	Comma rune
	// Null is the text that stands for NULL. PostgreSQL's COPY ... CSV
	// writes NULL as an empty field, which is the default.
	Null string
	// File names the input in errors.
	File string
}

// MaskCSV masks a CSV or TSV stream whose first record is a header of
// column names, and returns the number of data rows.
//
// NOTE: encoding/csv does not report whether a field was quoted, so an
// empty string and NULL are indistinguishable when Null is "". Both read as
// NULL and are written as an empty field.
func MaskCSV(r io.Reader, w io.Writer, plan *rules.Plan, opts CSVOptions) (int64, error) {
	cr := csv.NewReader(r)
	cr.Comma = opts.Comma
	cr.ReuseRecord = true
	cw := csv.NewWriter(w)
	cw.Comma = opts.Comma

	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, &RowError{File: opts.File, Line: 1, Err: fmt.Errorf("%w: no header record", ErrFormat)}
		}
		return 0, csvError(opts.File, err)
	}
	header = append([]string(nil), header...)
	schema, name := splitTable(opts.Table)
	tbl, err := plan.Table(schema, name, header)
	if err != nil {
		return 0, err
	}
	if err := cw.Write(header); err != nil {
		return 0, err
	}

	row := make([]rules.Field, len(header))
	out := make([]string, len(header))
	var n int64
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, csvError(opts.File, err)
		}
		n++
		for i, v := range rec {
			row[i] = rules.Field{Text: v, Null: v == opts.Null}
		}
		if err := tbl.MaskRow(row); err != nil {
			line, _ := cr.FieldPos(0)
			return n, &RowError{File: opts.File, Line: int64(line), Table: tbl.Name(), Row: n, Err: err}
		}
		for i, f := range row {
			out[i] = f.Text
			if f.Null {
				out[i] = opts.Null
			}
		}
		if err := cw.Write(out); err != nil {
			return n, err
		}
	}
	cw.Flush()
	return n, cw.Error()
}

func csvError(file string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &RowError{File: file, Line: int64(pe.Line), Err: fmt.Errorf("%w: %w", ErrFormat, pe.Err)}
	}
	return err
}
