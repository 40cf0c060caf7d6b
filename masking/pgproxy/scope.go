package pgproxy

import (
	"fmt"
	"slices"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

func isStar(ref *pg_query.ColumnRef) bool {
	return len(ref.Fields) > 0 && ref.Fields[len(ref.Fields)-1].GetAStar() != nil
}

func (r *resolver) expandStar(ref *pg_query.ColumnRef, sc *scope) ([]outputColumn, error) {
	entries := sc.entries
	if len(ref.Fields) > 1 {
		name := ref.Fields[len(ref.Fields)-2].GetString_().GetSval()
		entries = nil
		for _, e := range sc.entries {
			if e.name == name {
				entries = append(entries, e)
			}
		}
		if len(entries) != 1 {
			return nil, errLineage
		}
	} else if sc.noStar {
		return nil, fmt.Errorf("%w: * over a join that merges columns", errLineage)
	}
	var out []outputColumn
	for _, e := range entries {
		if e.opaque != nil {
			return nil, fmt.Errorf("%w: * over a function", errLineage)
		}
		out = append(out, slices.Clone(e.cols)...)
	}
	return out, nil
}

func outputName(n *pg_query.Node) string {
	switch {
	case n.GetColumnRef() != nil:
		f := n.GetColumnRef().Fields
		return f[len(f)-1].GetString_().GetSval()
	case n.GetFuncCall() != nil:
		f := n.GetFuncCall().Funcname
		return f[len(f)-1].GetString_().GetSval()
	case n.GetTypeCast() != nil:
		return outputName(n.GetTypeCast().Arg)
	}
	return "?column?"
}

func (r *resolver) columnRef(ref *pg_query.ColumnRef, sc *scope) sources {
	names := make([]string, 0, len(ref.Fields))
	star := false
	for _, f := range ref.Fields {
		if f.GetAStar() != nil {
			star = true
			continue
		}
		names = append(names, f.GetString_().GetSval())
	}

	for s := sc; s != nil; s = s.parent {
		if src, ok := lookupIn(s, names, star); ok {
			return src
		}
	}
	return sources{unknown: true}
}

// lookupIn resolves a column reference in one scope level. A bare name
// that matches no column but a FROM item is a whole-row reference.
func lookupIn(sc *scope, names []string, star bool) (sources, bool) {
	var out sources
	found := false
	whole := func(e *rangeEntry) {
		found = true
		if e.opaque != nil {
			out.union(*e.opaque)
			return
		}
		for _, c := range e.cols {
			out.union(c.src)
		}
	}

	switch {
	case star && len(names) == 0:
		for _, e := range sc.entries {
			whole(e)
		}
	case star:
		for _, e := range sc.entries {
			if e.name == names[len(names)-1] {
				whole(e)
			}
		}
	case len(names) == 1:
		for _, e := range sc.entries {
			if e.opaque != nil {
				// A function's columns are unknown by name, so any bare
				// name might be one of them.
				out.union(*e.opaque)
				found = true
				continue
			}
			for _, c := range e.cols {
				if c.name == names[0] {
					out.union(c.src)
					found = true
				}
			}
		}
		if !found {
			for _, e := range sc.entries {
				if e.name == names[0] {
					whole(e)
				}
			}
		}
	default:
		rel, col := names[len(names)-2], names[len(names)-1]
		for _, e := range sc.entries {
			if e.name != rel {
				continue
			}
			if e.opaque != nil {
				whole(e)
				continue
			}
			for _, c := range e.cols {
				if c.name == col {
					out.union(c.src)
					found = true
				}
			}
		}
	}
	return out, found
}
