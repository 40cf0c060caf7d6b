// Package pgproxy is the PostgreSQL masking proxy. It speaks the
// frontend/backend protocol version 3.0 toward ordinary PostgreSQL clients
// and logs in upstream with credentials never sent to the client. It masks
// every value of a result set, COPY stream, error or notice unless Casbin
// lets the caller unmask the column the value came from.
//
// For each result column the proxy finds its source columns. A plain column
// reference carries its table OID and column number in RowDescription, which
// the catalog resolves to schema.table.column. Every other output
// (functions, casts, subqueries, views, set operations, aggregates) is traced
// by parsing the statement with PostgreSQL's own parser (pg_query) and
// resolving the names through the catalog. Partitions and inheritance
// children count as their root table, and generated columns as the columns
// their expression reads. The caller may see a column in clear when authz
// allows "unmask" on column/<schema>.<table>.<column> in the caller's
// domain. Otherwise the column's masking rule transforms the value, and an
// output that mixes columns with different rules is redacted.
//
// Security contract: the proxy fails closed. A value whose source cannot be
// established (a user-defined function or operator, a recursive CTE, a
// statement the parser rejects) is redacted or its statement rejected
// (Config.UnknownLineage), never passed through, and a transformer error
// redacts the value. Error and notice fields lose the values PostgreSQL
// quotes in them. Clients may not change search_path, the read-only
// settings or the role, since tracing and write checks depend on them. The
// upstream password is read from an environment variable or a file, is
// never logged and never reaches the client. Messages are bounded in size,
// and password guessing is limited per user name. The proxy logs
// connections, rejections and the names of masked columns, never column
// values, statement text or credentials.
package pgproxy
