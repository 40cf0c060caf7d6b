package pgproxy

import (
	"slices"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// dataReadingBuiltins are built-in functions that run SQL text or read
// relations named in their arguments, so their output may carry any column.
var dataReadingBuiltins = []string{
	"query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema",
	"table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema",
	"cursor_to_xml", "cursor_to_xmlschema", "schema_to_xml", "schema_to_xmlschema",
	"schema_to_xml_and_xmlschema", "database_to_xml", "database_to_xmlschema",
	"database_to_xml_and_xmlschema", "lo_get", "lo_export", "loread", "pg_read_file",
	"pg_read_binary_file", "dblink", "dblink_exec", "current_setting",
	// ts_stat and ts_rewrite run a query given as text; the activity
	// functions return other sessions' statements, which may quote values.
	"ts_stat", "ts_rewrite", "pg_stat_get_activity", "pg_stat_get_backend_activity",
}

// opaqueFunction reports whether a call may read data the arguments do not
// show: a function outside pg_catalog or a built-in that runs SQL text.
func (r *resolver) opaqueFunction(name []*pg_query.Node) bool {
	parts := make([]string, len(name))
	for i, n := range name {
		parts[i] = n.GetString_().GetSval()
	}
	if len(parts) == 0 {
		return true
	}
	fn := parts[len(parts)-1]
	if len(parts) > 1 && parts[len(parts)-2] != "pg_catalog" {
		return true
	}
	if slices.Contains(dataReadingBuiltins, fn) {
		return true
	}
	user, err := r.cat.userFunction(r.ctx, fn)
	return err != nil || user
}

// opaqueOperator reports whether an operator may be user-defined, so its
// function might read data the operands do not show.
func (r *resolver) opaqueOperator(name []*pg_query.Node) bool {
	if len(name) == 0 {
		return false
	}
	op := name[len(name)-1].GetString_().GetSval()
	if len(name) > 1 && name[len(name)-2].GetString_().GetSval() != "pg_catalog" {
		return true
	}
	user, err := r.cat.userOperator(r.ctx, op)
	return err != nil || user
}
