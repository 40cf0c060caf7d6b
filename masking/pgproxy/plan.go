package pgproxy

import (
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
// caller. st may be nil when the statement text was not traced.
func (s *session) plan(st *statement, fields []pgproto3.FieldDescription) (*resultPlan, error) {
	if st != nil && st.fetches != "" {
		s.mu.Lock()
		st = s.cursors[st.fetches]
		s.mu.Unlock()
	}
	p := &resultPlan{cols: make([]columnAction, len(fields))}
	direct := make([]sources, len(fields))
	for i, f := range fields {
		var src sources
		known := false
		if st != nil && st.outputs != nil && len(st.outputs) == len(fields) {
			src.union(st.outputs[i].src)
			known = true
		}
		if f.TableOID != 0 {
			origin, ok := s.origin(f.TableOID, f.TableAttributeNumber)
			if ok {
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
		a, err := s.action(src, f)
		if err != nil {
			return nil, err
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
	return p, nil
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

// origin returns the lineage of a RowDescription origin column.
func (s *session) origin(oid uint32, attnum uint16) (sources, bool) {
	rel, err := s.srv.catalog.relationByOID(s.ctx, oid)
	if err != nil || rel == nil {
		return sources{}, false
	}
	i := rel.columnIndex(int16(attnum))
	if i < 0 {
		return sources{}, false
	}
	r := &resolver{ctx: s.ctx, cat: s.srv.catalog}
	cols, err := r.relationColumns(rel)
	if err != nil || i >= len(cols) {
		return sources{}, false
	}
	return cols[i].src, true
}

// action decides one column: kept when the caller may unmask every source,
// masked by the one rule of the masked sources, or redacted.
func (s *session) action(src sources, f pgproto3.FieldDescription) (columnAction, error) {
	a := columnAction{oid: f.DataTypeOID, format: f.Format}
	if src.unknown {
		if s.srv.cfg.UnknownLineage == UnknownReject {
			return a, fmt.Errorf("%w: the source columns of result column %q cannot be established", ErrRejected, f.Name)
		}
		a.kind = actionRedact
		return a, nil
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
			return a, nil
		}
		if m == nil {
			continue
		}
		if chosen != nil && chosen.spec != m.spec {
			a.kind = actionRedact
			return a, nil
		}
		if chosen == nil {
			chosen = m
		}
	}
	if chosen != nil {
		a.kind, a.masker = actionMask, chosen
	}
	return a, nil
}
