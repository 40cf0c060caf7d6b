package static

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"ward.dev/ward/masking/rules"
)

// MaxLine bounds one line of JSON Lines or SQL dump input, in bytes.
const MaxLine = 64 << 20

// MaskJSONL masks a JSON Lines stream: one object per line, whose keys are
// the column names of table (schema.table). Key order is kept. A string
// or number value is the column's text, null is NULL, and an object or
// array is JSON text for json-path rules. It returns the number of rows.
func MaskJSONL(r io.Reader, w io.Writer, plan *rules.Plan, table, file string) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	bw := bufio.NewWriter(w)
	schema, name := splitTable(table)
	tables := map[string]*rules.Table{}

	var n, line int64
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		n++
		keys, raws, err := splitObject(text)
		if err != nil {
			return n, &RowError{File: file, Line: line, Err: fmt.Errorf("%w: %w", ErrFormat, err)}
		}

		// Lines may carry different keys, so a masker is built per key set.
		sig := strings.Join(keys, "\x00")
		tbl, ok := tables[sig]
		if !ok {
			if tbl, err = plan.Table(schema, name, keys); err != nil {
				return n, &RowError{File: file, Line: line, Err: err}
			}
			tables[sig] = tbl
		}

		row := make([]rules.Field, len(keys))
		kinds := make([]byte, len(keys))
		for i, raw := range raws {
			row[i], kinds[i] = jsonField(raw)
		}
		if err := tbl.MaskRow(row); err != nil {
			return n, &RowError{File: file, Line: line, Table: tbl.Name(), Row: n, Err: err}
		}
		if err := writeObject(bw, keys, row, kinds); err != nil {
			return n, err
		}
	}
	if err := sc.Err(); err != nil {
		return n, &RowError{File: file, Line: line + 1, Err: fmt.Errorf("%w: %w", ErrFormat, err)}
	}
	return n, bw.Flush()
}

// splitObject returns the keys and raw values of a JSON object, in order.
func splitObject(text []byte) ([]string, []json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, fmt.Errorf("line is not a JSON object")
	}
	var keys []string
	var raws []json.RawMessage
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, err
		}
		keys = append(keys, key)
		raws = append(raws, raw)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, err
	}
	if dec.More() {
		return nil, nil, fmt.Errorf("text after the object")
	}
	return keys, raws, nil
}

// jsonField converts a raw JSON value to a field and remembers its JSON
// kind: 's' string, 'n' number, 'j' other JSON, 0 null.
func jsonField(raw json.RawMessage) (rules.Field, byte) {
	switch raw[0] {
	case 'n':
		return rules.Field{Null: true}, 0
	case '"':
		var s string
		_ = json.Unmarshal(raw, &s)
		return rules.Field{Text: s}, 's'
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return rules.Field{Text: string(raw)}, 'n'
	}
	return rules.Field{Text: string(raw)}, 'j'
}

func writeObject(w *bufio.Writer, keys []string, row []rules.Field, kinds []byte) error {
	w.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			w.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		w.Write(kb)
		w.WriteByte(':')
		f := row[i]
		switch {
		case f.Null:
			w.WriteString("null")
		case kinds[i] == 'n' && json.Valid([]byte(f.Text)) && isNumber(f.Text):
			w.WriteString(f.Text)
		case kinds[i] == 'j' && json.Valid([]byte(f.Text)):
			w.WriteString(f.Text)
		default:
			b, err := marshalString(f.Text)
			if err != nil {
				return err
			}
			w.Write(b)
		}
	}
	w.WriteByte('}')
	_, err := w.WriteString("\n")
	return err
}

func isNumber(s string) bool {
	var n json.Number
	return json.Unmarshal([]byte(s), &n) == nil
}

func marshalString(s string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
