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
// resolving the names through the catalog. The caller may see a column in
// clear when authz allows "unmask" on column/<schema>.<table>.<column> in the
// caller's domain; otherwise the column's masking rule transforms the value,
// and an output that mixes columns with different rules is redacted.
//
// Security contract: the proxy fails closed. A value whose source cannot be
// established is redacted or its statement rejected (Config.UnknownLineage),
// never passed through; a transformer error redacts the value. The upstream
// password is read from an environment variable or a file, is never logged
// and never reaches the client. Messages are bounded in size. The proxy logs
// connections and decisions, never column values or credentials.
package pgproxy
