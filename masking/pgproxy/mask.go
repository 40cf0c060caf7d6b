package pgproxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"ward.dev/ward/masking/rules"
)

// ErrRejected means the proxy rejected a statement; the client gets an
// ErrorResponse with SQLSTATE 42501 (insufficient_privilege).
var ErrRejected = errors.New("statement rejected by ward")

// redactedText replaces a redacted value of a text type.
const redactedText = "REDACTED"

// actionKind is the treatment of the values of one result column.
type actionKind uint8

const (
	actionKeep actionKind = iota
	actionMask
	actionRedact
)

// columnAction is the treatment of one result column for one caller.
type columnAction struct {
	kind   actionKind
	masker *columnMasker
	oid    uint32
	format int16
	// entity is the result column that carries the masker's entity column
	// unchanged, or -1.
	entity int
}

// resultPlan is the treatment of every column of one result set.
type resultPlan struct {
	cols []columnAction
	// masks is false when every column is kept, so rows pass unparsed.
	masks bool
	// entities is set when a masked column is keyed by another column.
	entities bool
}

// columnMasker masks values of one column with its rules. It opens the
// rules for the column's whole table, because rules.Table masks rows.
type columnMasker struct {
	col   rules.Column
	spec  string // transformer and parameters, to tell rules apart
	table *rules.Table
	index int
	// entity is the column a rule keys its transformer with (date-shift
	// moves all dates of one customer alike).
	entity string
	// derivedSafe is set when every rule of the column is a transformer
	// whose output keeps nothing of the input's characters or magnitude,
	// so it may also mask values computed from the column.
	derivedSafe bool
}

// derivationSafe are the transformers whose output reveals nothing of the
// form of their input: a computed value masked by one leaks nothing.
var derivationSafe = map[string]bool{"redact": true, "null": true, "hash": true, "tokenize": true, "fake": true}

// appendMask appends the masked text of value to dst, or reports null for
// a NULL result. entity is the original value of the rule's entity column in the
// same row, or nil when the result does not carry it.
func (m *columnMasker) appendMask(dst []byte, value string, entity []byte) (out []byte, null bool, err error) {
	return m.table.AppendField(dst, m.index, value, unsafe.String(unsafe.SliceData(entity), len(entity)))
}

// maskers finds and caches the masker of each column. It is safe for
// concurrent use.
type maskers struct {
	plan  *rules.Plan
	cat   catalogSource
	clock func() time.Time

	mu     sync.Mutex
	filled time.Time                      // when the maps were last emptied, as in pgCatalog
	byCol  map[rules.Column]*columnMasker // nil value: the rules keep it
	tables map[string]*rules.Table
}

// forColumn returns the column's masker, or nil when its rules keep it.
func (ms *maskers) forColumn(ctx context.Context, col rules.Column) (*columnMasker, error) {
	ms.mu.Lock()
	if now := ms.clock(); now.Sub(ms.filled) >= catalogTTL {
		// The tables were opened with the column lists of that time.
		ms.reset(now)
	}
	m, ok := ms.byCol[col]
	ms.mu.Unlock()
	if ok {
		return m, nil
	}

	keep, spec := ms.keeps(col)
	if keep {
		ms.store(col, nil)
		return nil, nil
	}
	rel, err := ms.cat.relationByName(ctx, col.Schema, col.Table)
	if err != nil {
		return nil, err
	}
	if rel == nil {
		return nil, fmt.Errorf("relation %s not found", col.TableName())
	}
	ms.mu.Lock()
	t, ok := ms.tables[col.TableName()]
	ms.mu.Unlock()
	if !ok {
		t, err = ms.plan.Table(col.Schema, col.Table, rel.Columns)
		if err != nil {
			return nil, err
		}
		ms.mu.Lock()
		ms.tables[col.TableName()] = t
		ms.mu.Unlock()
	}
	m = &columnMasker{col: col, spec: spec, table: t, index: -1}
	rs := ms.plan.Rules(col)
	m.derivedSafe = len(rs) > 0
	for _, r := range rs {
		if r.Entity != "" {
			m.entity = r.Entity
		}
		if !derivationSafe[r.Transformer] || r.JSONPath != "" || r.Elements {
			m.derivedSafe = false
		}
	}
	m.index = slices.Index(rel.Columns, col.Name)
	if m.index < 0 {
		return nil, fmt.Errorf("column %s not found", col)
	}
	ms.store(col, m)
	return m, nil
}

// reset empties the caches as of now. ms.mu is held.
func (ms *maskers) reset(now time.Time) {
	clear(ms.byCol)
	clear(ms.tables)
	ms.filled = now
}

func (ms *maskers) store(col rules.Column, m *columnMasker) {
	ms.mu.Lock()
	ms.byCol[col] = m
	ms.mu.Unlock()
}

// keeps reports whether the rules leave col as it is, and otherwise returns
// a text that is equal for equal rules.
func (ms *maskers) keeps(col rules.Column) (bool, string) {
	rs := ms.plan.Rules(col)
	if len(rs) == 0 {
		d := ms.plan.Ruleset().Default
		return d == rules.DefaultKeep, "default " + string(d)
	}
	var b strings.Builder
	keep := true
	for _, r := range rs {
		if r.Transformer != rules.KeepTransformer {
			keep = false
		}
		fmt.Fprintf(&b, "%s|%s|%v|%s|%v;", r.Transformer, r.JSONPath, r.Elements, r.Entity, r.Params)
	}
	return keep, b.String()
}

// textOIDs are types whose binary format is their text.
var textOIDs = map[uint32]bool{
	pgtype.TextOID: true, pgtype.VarcharOID: true, pgtype.BPCharOID: true, pgtype.NameOID: true, 705: true,
}

// maskRow masks the values of a DataRow in place according to plan. The
// masked values are appended to arena, which the caller may reuse once the
// row has been encoded. It returns the grown arena.
func maskRow(plan *resultPlan, types *pgtype.Map, row *pgproto3.DataRow, arena []byte) []byte {
	if !plan.masks {
		return arena
	}
	if len(row.Values) != len(plan.cols) {
		// A row that does not match its description is redacted whole.
		for i := range row.Values {
			row.Values[i] = nil
		}
		return arena
	}
	// Entity values are taken before any column of the row changes.
	original := row.Values
	if plan.entities {
		original = slices.Clone(row.Values)
	}
	for i, a := range plan.cols {
		if a.kind == actionKeep || row.Values[i] == nil {
			continue
		}
		var entity []byte
		if a.entity >= 0 {
			entity = entityText(types, plan.cols[a.entity], original[a.entity])
		}
		row.Values[i], arena = maskValue(a, types, row.Values[i], entity, arena)
	}
	return arena
}

// entityText returns an entity value in text form, as rules expect it.
func entityText(types *pgtype.Map, a columnAction, v []byte) []byte {
	if v == nil || a.format != pgtype.BinaryFormatCode || textOIDs[a.oid] {
		return v
	}
	text, ok := binaryToText(types, a.oid, v)
	if !ok {
		return nil
	}
	return []byte(text)
}

// maskValue returns the masked form of one value, or nil (SQL NULL) when
// the value cannot be masked in its type. A masked text value is appended
// to arena, and the grown arena returned with it.
func maskValue(a columnAction, types *pgtype.Map, v, entity, arena []byte) ([]byte, []byte) {
	if a.kind == actionRedact {
		return redactedValue(a), arena
	}

	binary := a.format == pgtype.BinaryFormatCode && !textOIDs[a.oid]
	// Transformers keep no reference to their input, so the text may
	// share the row's memory.
	text := unsafe.String(unsafe.SliceData(v), len(v))
	if binary {
		var ok bool
		text, ok = binaryToText(types, a.oid, v)
		if !ok {
			return nil, arena
		}
	}
	start := len(arena)
	grown, null, err := a.masker.appendMask(arena, text, entity)
	if err != nil || null {
		// A transformer that cannot mask this value (a derived output of
		// another type, for example) redacts it rather than pass it.
		return redactedValue(a), arena
	}
	if binary {
		b, ok := textToBinary(types, a.oid, string(grown[start:]))
		if !ok {
			return nil, arena
		}
		return b, arena
	}
	return grown[start:len(grown):len(grown)], grown
}

// redactedBytes is shared by every redacted value, so nothing may write to it.
var redactedBytes = []byte(redactedText)

func redactedValue(a columnAction) []byte {
	if textOIDs[a.oid] {
		return redactedBytes
	}
	return nil
}

func binaryToText(types *pgtype.Map, oid uint32, v []byte) (string, bool) {
	t, ok := types.TypeForOID(oid)
	if !ok {
		return "", false
	}
	val, err := t.Codec.DecodeValue(types, oid, pgtype.BinaryFormatCode, v)
	if err != nil {
		return "", false
	}
	b, err := types.Encode(oid, pgtype.TextFormatCode, val, nil)
	if err != nil || b == nil {
		return "", false
	}
	return string(b), true
}

func textToBinary(types *pgtype.Map, oid uint32, s string) ([]byte, bool) {
	t, ok := types.TypeForOID(oid)
	if !ok {
		return nil, false
	}
	val, err := t.Codec.DecodeValue(types, oid, pgtype.TextFormatCode, []byte(s))
	if err != nil {
		return nil, false
	}
	b, err := types.Encode(oid, pgtype.BinaryFormatCode, val, nil)
	if err != nil || b == nil {
		return nil, false
	}
	return b, true
}
