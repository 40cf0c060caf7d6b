package pgproxy

import (
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5/pgproto3"

	"ward.dev/ward/masking/rules"
)

// withFormats applies Bind's result format codes to a statement's fields.
func withFormats(fields []pgproto3.FieldDescription, formats []int16) []pgproto3.FieldDescription {
	out := slices.Clone(fields)
	for i := range out {
		switch len(formats) {
		case 0:
			out[i].Format = 0
		case 1:
			out[i].Format = formats[0]
		default:
			if i < len(formats) {
				out[i].Format = formats[i]
			}
		}
	}
	return out
}

// plan decides the treatment of each column of a result set for this
// caller. st may be nil when the statement text was not traced. A plan
// found for the same statement and fields is reused while it is current
// (see planCache).
func (s *session) plan(st *statement, fields []pgproto3.FieldDescription) (*resultPlan, error) {
	if st != nil && st.fetches != "" {
		s.mu.Lock()
		st = s.cursors[st.fetches]
		s.mu.Unlock()
	}
	stamp, stampOK := s.planStamp()
	if stampOK {
		if p := s.plans.get(st, fields, stamp, s.srv.clock()); p != nil {
			return p, nil
		}
	}
	p, cacheable, err := s.buildPlan(st, fields)
	if err != nil {
		return nil, err
	}
	if stampOK && cacheable {
		s.plans.put(st, fields, stamp, p)
	}
	return p, nil
}

// buildPlan decides every column of a result set. cacheable is false when
// a catalog or rule lookup failed, so the plan reflects a transient error
// rather than the catalog and policy.
func (s *session) buildPlan(st *statement, fields []pgproto3.FieldDescription) (p *resultPlan, cacheable bool, err error) {
	p = &resultPlan{cols: make([]columnAction, len(fields))}
	cacheable = true
	direct := make([]sources, len(fields))
	for i, f := range fields {
		var src sources
		known, plain := false, false
		if st != nil && st.outputs != nil && len(st.outputs) == len(fields) {
			src.union(st.outputs[i].src)
			known = true
		}
		if f.TableOID != 0 {
			origin, ok, plainOrigin, lookupErr := s.origin(f.TableOID, f.TableAttributeNumber)
			if lookupErr {
				cacheable = false
			}
			if ok {
				plain = plainOrigin
				if !known {
					src = origin
				} else {
					src.union(origin)
				}
				known = true
			}
		}
		if !known {
			src.unknown = true
		}
		// An output is the stored value itself only when PostgreSQL names
		// its table column and the statement traces it to that column alone.
		plain = plain && !src.unknown && len(src.cols) == 1
		a, failed, err := s.action(src, f, plain)
		if err != nil {
			return nil, false, err
		}
		if failed {
			cacheable = false
		}
		p.cols[i] = a
		p.masks = p.masks || a.kind != actionKeep
		direct[i] = src
	}
	s.linkEntities(p, direct)
	if p.masks {
		// Column names and counts only: values and statement text, which
		// may quote values, are never logged.
		var masked, redacted []string
		for i, a := range p.cols {
			switch a.kind {
			case actionMask:
				masked = append(masked, string(fields[i].Name))
			case actionRedact:
				redacted = append(redacted, string(fields[i].Name))
			}
		}
		s.log.Debug("pgproxy masking result", "masked", masked, "redacted", redacted)
	}
	return p, cacheable, nil
}

// linkEntities points each masked column whose rule has an entity column
// at a result column derived from that column alone, if there is one.
// The values of that column then key the transformer.
func (s *session) linkEntities(p *resultPlan, lineage []sources) {
	for i := range p.cols {
		p.cols[i].entity = -1
		m := p.cols[i].masker
		if m == nil || m.entity == "" {
			continue
		}
		want := rules.Column{Schema: m.col.Schema, Table: m.col.Table, Name: m.entity}
		for j, src := range lineage {
			if src.unknown || len(src.cols) != 1 {
				continue
			}
			if _, ok := src.cols[want]; ok {
				p.cols[i].entity = j
				p.entities = true
				break
			}
		}
	}
}

// origin returns the lineage of a RowDescription origin column. failed
// reports a catalog error, as opposed to an unknown relation or column.
// plain reports whether the column holds stored values as they are: a
// column of a table that no expression computes. A view's, materialized
// view's or generated column may hold lower(email) or substr(phone, 3).
func (s *session) origin(oid uint32, attnum uint16) (src sources, ok, plain, failed bool) {
	rel, err := s.srv.catalog.relationByOID(s.ctx, oid)
	if err != nil || rel == nil {
		return sources{}, false, false, err != nil
	}
	i := rel.columnIndex(int16(attnum))
	if i < 0 {
		return sources{}, false, false, false
	}
	r := &resolver{ctx: s.ctx, cat: s.srv.catalog}
	cols, err := r.relationColumns(rel)
	if err != nil || i >= len(cols) {
		// A view whose definition cannot be traced fails the same way
		// each time; a catalog error inside it may not.
		return sources{}, false, false, err != nil && !errors.Is(err, errLineage)
	}
	plain = (rel.Kind == 'r' || rel.Kind == 'p' || rel.Kind == 'f') && (i >= len(rel.Generated) || rel.Generated[i] == "")
	return cols[i].src, true, plain, false
}

// action decides one column: kept when the caller may unmask every source,
// masked by the one rule of the masked sources, or redacted. A computed
// output (not plain) is masked only by a transformer whose output shows
// nothing of its input's form. Partial, noise or fpe applied to, say,
// substr(phone, k, 3) or salary - 50000 would give the hidden digits away.
// failed reports a redaction because a rule could not be loaded.
func (s *session) action(src sources, f pgproto3.FieldDescription, plain bool) (a columnAction, failed bool, err error) {
	a = columnAction{oid: f.DataTypeOID, format: f.Format}
	if src.unknown {
		if s.srv.cfg.UnknownLineage == UnknownReject {
			return a, false, fmt.Errorf("%w: the source columns of result column %q cannot be established", ErrRejected, f.Name)
		}
		a.kind = actionRedact
		return a, false, nil
	}

	var chosen *columnMasker
	for _, c := range src.list() {
		if s.unmasked(c) {
			continue
		}
		m, err := s.srv.maskers.forColumn(s.ctx, c)
		if err != nil {
			s.log.Warn("pgproxy masking rule unavailable, redacting", "column", c.String(), "err", err)
			a.kind = actionRedact
			return a, true, nil
		}
		if m == nil {
			continue
		}
		if chosen != nil && chosen.spec != m.spec {
			a.kind = actionRedact
			return a, false, nil
		}
		if chosen == nil {
			chosen = m
		}
	}
	switch {
	case chosen == nil:
	case !plain && !chosen.derivedSafe:
		a.kind = actionRedact
	default:
		a.kind, a.masker = actionMask, chosen
	}
	return a, false, nil
}
