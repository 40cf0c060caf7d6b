package static

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/transform"
)

// ErrTargetNotEmpty means the target database already has a table that the
// copy would create.
var ErrTargetNotEmpty = errors.New("target database is not empty")

// DBOptions configures CopyDatabase.
type DBOptions struct {
	// Source and Target are PostgreSQL connection strings (URL or
	// key=value). The target database must exist and must not contain the
	// source's tables.
	Source, Target string
	// BinDir holds pg_dump and psql; empty means they are found on PATH.
	BinDir string
	// Jobs is the number of tables copied at once; 0 means 2.
	Jobs int
	// Logger receives one line per phase and per table; nil discards.
	Logger *slog.Logger
	// Progress, when set, is called with a table's row count every
	// progressEvery rows and once when the table is done. It is called
	// from several goroutines at once.
	Progress func(table string, rows int64, done bool)
}

const progressEvery = 10000

// CopyDatabase makes a masked copy of the source database in the target.
// The schema comes from pg_dump --schema-only: pre-data before the rows,
// post-data (indexes and constraints) after them. Every table is streamed
// with COPY TO, masked, and loaded with COPY FROM, several tables at once,
// all from one snapshot of the source. Sequences get their source values.
//
// Each worker loads its tables in one transaction, and the transactions
// commit only after every table is loaded. On any failure, the objects the
// copy created are dropped again, so the target has no partial tables. The
// error names the table and row.
func CopyDatabase(ctx context.Context, rs *rules.Ruleset, keys *transform.Keys, opts DBOptions) (stats *Stats, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = 2
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	src, err := connectCopy(ctx, opts.Source)
	if err != nil {
		return nil, fmt.Errorf("connecting to source: %w", err)
	}
	defer src.Close(context.Background())
	tgt, err := connectCopy(ctx, opts.Target)
	if err != nil {
		return nil, fmt.Errorf("connecting to target: %w", err)
	}
	defer tgt.Close(context.Background())

	// The coordinator's transaction exports the snapshot that every worker
	// reads, so all tables come from the same moment of the source.
	if _, err := src.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		return nil, err
	}
	var snapshot string
	if err := src.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snapshot); err != nil {
		return nil, fmt.Errorf("exporting source snapshot: %w", err)
	}
	catalog, err := ReadCatalog(ctx, src)
	if err != nil {
		return nil, err
	}
	plan, err := rules.Compile(rs, catalog, keys)
	if err != nil {
		return nil, err
	}
	if err := plan.CheckTables(); err != nil {
		return nil, err
	}
	tables := sortedTables(catalog)
	if err := checkEmpty(ctx, tgt, tables); err != nil {
		return nil, err
	}

	// Build every table's masker before touching the target, so a rule
	// naming a missing column fails with nothing created.
	maskers := map[string]*rules.Table{}
	for _, name := range tables {
		schema, table := splitTable(name)
		if maskers[name], err = plan.Table(schema, table, columnNames(catalog, name)); err != nil {
			return nil, err
		}
	}

	// The three schema dumps read the same snapshot and do not depend on
	// each other, so they run at once, and the post-data one overlaps with
	// the data copy.
	preDump := startDump(ctx, opts, "--snapshot="+snapshot, "--section=pre-data")
	dropsDump := startDump(ctx, opts, "--snapshot="+snapshot, "--section=pre-data", "--clean", "--if-exists")
	postDump := startDump(ctx, opts, "--snapshot="+snapshot, "--section=post-data")
	pre, err := preDump.wait()
	if err != nil {
		return nil, err
	}
	drops, err := dropsDump.wait()
	if err != nil {
		return nil, err
	}
	log.Info("creating schema", "phase", "pre-data")
	if err := runPSQL(ctx, opts, pre); err != nil {
		return nil, fmt.Errorf("creating schema in target: %w", err)
	}
	defer func() {
		if err != nil {
			log.Info("dropping what the copy created", "error", err)
			if cerr := runPSQL(context.Background(), opts, dropStatements(drops)); cerr != nil {
				err = fmt.Errorf("%w (and dropping the partial copy failed: %v)", err, cerr)
			}
		}
	}()

	stats = &Stats{}
	if err := copyTables(ctx, opts, snapshot, tables, maskers, jobs, log, stats); err != nil {
		return nil, err
	}
	if err := copySequences(ctx, src, tgt); err != nil {
		return nil, err
	}
	log.Info("creating indexes and constraints", "phase", "post-data")
	post, err := postDump.wait()
	if err != nil {
		return nil, err
	}
	if err := runPSQL(ctx, opts, post); err != nil {
		return nil, fmt.Errorf("creating indexes and constraints in target (a masked column may break a UNIQUE or foreign key constraint): %w", err)
	}
	_, _ = src.Exec(ctx, "COMMIT")
	return stats, nil
}

func sortedTables(c *rules.Catalog) []string {
	var out []string
	for name := range c.Tables {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func columnNames(c *rules.Catalog, table string) []string {
	var out []string
	for _, ci := range c.Tables[table] {
		out = append(out, ci.Column.Name)
	}
	return out
}

func checkEmpty(ctx context.Context, tgt *pgx.Conn, tables []string) error {
	for _, name := range tables {
		schema, table := splitTable(name)
		var exists bool
		err := tgt.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{schema, table}.Sanitize()).Scan(&exists)
		if err != nil {
			return fmt.Errorf("checking target: %w", err)
		}
		if exists {
			return fmt.Errorf("%w: table %s exists; copy into a new, empty database", ErrTargetNotEmpty, name)
		}
	}
	return nil
}

func copySequences(ctx context.Context, src, tgt *pgx.Conn) error {
	rows, err := src.Query(ctx, "SELECT schemaname, sequencename, last_value FROM pg_sequences WHERE last_value IS NOT NULL")
	if err != nil {
		return fmt.Errorf("reading sequences: %w", err)
	}
	type seq struct {
		schema, name string
		last         int64
	}
	var seqs []seq
	for rows.Next() {
		var s seq
		if err := rows.Scan(&s.schema, &s.name, &s.last); err != nil {
			return err
		}
		seqs = append(seqs, s)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, s := range seqs {
		if _, err := tgt.Exec(ctx, "SELECT setval($1::regclass, $2, true)", pgx.Identifier{s.schema, s.name}.Sanitize(), s.last); err != nil {
			return fmt.Errorf("setting sequence %s.%s: %w", s.schema, s.name, err)
		}
	}
	return nil
}

// worker copies tables over its own source and target connections; its
// target transaction stays open until every worker is done.
type worker struct {
	src, tgt *pgx.Conn
	// binary is set when both servers have the same major version, so
	// that the binary form of every built-in type is the same on both.
	binary bool
}

func copyTables(ctx context.Context, opts DBOptions, snapshot string, tables []string, maskers map[string]*rules.Table, jobs int, log *slog.Logger, stats *Stats) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	queue := make(chan string, len(tables))
	for _, t := range tables {
		queue <- t
	}
	close(queue)

	var (
		mu       sync.Mutex
		firstErr error
		workers  []*worker
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
	}
	defer func() {
		for _, w := range workers {
			w.src.Close(context.Background())
			w.tgt.Close(context.Background())
		}
	}()

	// All connections open before any copy starts, so a copy failure that
	// cancels ctx cannot masquerade as a connection error.
	for range min(jobs, max(1, len(tables))) {
		w, err := openWorker(ctx, opts, snapshot)
		if err != nil {
			return err
		}
		workers = append(workers, w)
	}
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range queue {
				if ctx.Err() != nil {
					return
				}
				n, err := copyTable(ctx, w, name, maskers[name], opts.Progress)
				if err != nil {
					fail(err)
					return
				}
				mu.Lock()
				stats.add(name, n)
				mu.Unlock()
				log.Info("table copied", "table", name, "rows", n)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}

	for _, w := range workers {
		if _, err := w.tgt.Exec(ctx, "COMMIT"); err != nil {
			return fmt.Errorf("committing loaded tables: %w", err)
		}
	}
	return nil
}

// copySettings fix the text forms that COPY writes and reads, as pg_dump
// does for its own session. Settings of the source or target database
// (ALTER DATABASE ... SET DateStyle) would otherwise change kept dates,
// intervals and floats, or make the target misread them, and a source in
// another encoding would send bytes the target reads as UTF-8.
var copySettings = map[string]string{
	"client_encoding":    "UTF8",
	"DateStyle":          "ISO",
	"IntervalStyle":      "postgres",
	"extra_float_digits": "3",
	"bytea_output":       "hex",
}

// connectCopy connects to dsn with copySettings.
func connectCopy(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	for k, v := range copySettings {
		cfg.RuntimeParams[k] = v
	}
	return pgx.ConnectConfig(ctx, cfg)
}

func openWorker(ctx context.Context, opts DBOptions, snapshot string) (*worker, error) {
	src, err := connectCopy(ctx, opts.Source)
	if err != nil {
		return nil, fmt.Errorf("connecting to source: %w", err)
	}
	tgt, err := connectCopy(ctx, opts.Target)
	if err != nil {
		src.Close(ctx)
		return nil, fmt.Errorf("connecting to target: %w", err)
	}
	w := &worker{src: src, tgt: tgt}
	major := majorVersion(src.PgConn().ParameterStatus("server_version"))
	w.binary = major != "" && major == majorVersion(tgt.PgConn().ParameterStatus("server_version"))
	for _, q := range []struct {
		conn *pgx.Conn
		sql  string
	}{
		{src, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"},
		{src, "SET TRANSACTION SNAPSHOT " + quoteLiteral(snapshot)},
		{tgt, "BEGIN"},
	} {
		if _, err := q.conn.Exec(ctx, q.sql); err != nil {
			src.Close(ctx)
			tgt.Close(ctx)
			return nil, fmt.Errorf("starting copy transaction: %w", err)
		}
	}
	return w, nil
}

var copyLineRe = regexp.MustCompile(`COPY [^,]+, line (\d+)`)

// copyTable streams one table from source to target through the masker.
func copyTable(ctx context.Context, w *worker, name string, tbl *rules.Table, progress func(string, int64, bool)) (int64, error) {
	cols := make([]string, len(tbl.Columns()))
	for i, c := range tbl.Columns() {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	schema, table := splitTable(name)
	ident := pgx.Identifier{schema, table}.Sanitize()
	// A table without loadable columns still has rows, which COPY sends
	// as empty rows when no column list is given.
	list := ""
	if len(cols) > 0 {
		list = " (" + strings.Join(cols, ", ") + ")"
	}

	// The table is new and empty. Truncating it in the load's transaction
	// lets a target with wal_level=minimal skip WAL for the COPY, as the
	// PostgreSQL documentation of wal_level describes. With a higher level
	// the TRUNCATE of an empty table costs little.
	if _, err := w.tgt.Exec(ctx, "TRUNCATE ONLY "+ident); err != nil {
		return 0, fmt.Errorf("table %s: truncating before the load: %w", name, err)
	}

	binary := w.binary
	if binary {
		var err error
		if binary, err = binaryCopyable(ctx, w.src, ident, tbl); err != nil {
			return 0, fmt.Errorf("table %s: reading column types: %w", name, err)
		}
	}
	format := ""
	if binary {
		format = " (FORMAT binary)"
	}

	// The buffer batches rows into large writes; an unbuffered pipe would
	// send every row to the target as its own message.
	pr, pw := io.Pipe()
	buffered := bufio.NewWriterSize(pw, 256<<10)
	mw := &maskWriter{table: tbl, out: buffered, binary: binary, progress: progress}
	done := make(chan error, 1)
	go func() {
		_, err := w.src.PgConn().CopyTo(ctx, mw, "COPY "+ident+list+" TO STDOUT"+format)
		if ferr := mw.finish(); err == nil {
			err = ferr
		}
		if err == nil {
			err = buffered.Flush()
		}
		pw.CloseWithError(err)
		done <- err
	}()

	_, loadErr := w.tgt.PgConn().CopyFrom(ctx, pr, "COPY "+ident+list+" FROM STDIN"+format)
	pr.CloseWithError(errors.New("target stopped reading"))
	readErr := <-done

	// A masking failure is the cause when both sides fail.
	var rowErr *RowError
	if errors.As(readErr, &rowErr) {
		return 0, rowErr
	}
	if loadErr != nil {
		var pgErr *pgconn.PgError
		// The target reports 57014 (query_canceled) for the CopyFail that
		// pgconn sends when the source side failed first.
		if errors.As(loadErr, &pgErr) && pgErr.Code == "57014" && readErr != nil {
			return 0, fmt.Errorf("table %s: reading from source: %w", name, readErr)
		}
		if errors.As(loadErr, &pgErr) {
			row := int64(0)
			if m := copyLineRe.FindStringSubmatch(pgErr.Where); m != nil {
				row, _ = strconv.ParseInt(m[1], 10, 64)
			}
			return 0, &RowError{Table: name, Row: row, Err: fmt.Errorf("target rejected the row: %s (SQLSTATE %s)", pgErr.Message, pgErr.Code)}
		}
		return 0, fmt.Errorf("table %s: loading into target: %w", name, loadErr)
	}
	if readErr != nil {
		return 0, fmt.Errorf("table %s: reading from source: %w", name, readErr)
	}
	if progress != nil {
		progress(name, mw.rows, true)
	}
	return mw.rows, nil
}

// Type OIDs of the text types, whose binary form is their text, and the
// first OID of objects created after initdb (FirstNormalObjectId), below
// which every type is built in.
const (
	oidText             = 25
	oidBPChar           = 1042
	oidVarchar          = 1043
	firstNormalObjectID = 16384
)

// binaryCopyable reports whether table ident can go through COPY's binary
// format. Every column must have a built-in type with binary send and
// receive functions, which aclitem lacks. No column may have a reg* type,
// whose binary form is an object's OID and whose text form its name. And
// every column the masker reads must be text. A type created in the database is left to the text
// format, since its binary form may embed OIDs that differ between the two
// databases or come from an extension of another version. Arrays are
// judged by their element type.
func binaryCopyable(ctx context.Context, src *pgx.Conn, ident string, tbl *rules.Table) (bool, error) {
	rows, err := src.Query(ctx, `SELECT a.attname, a.atttypid::int8,
			t.typsend <> 0 AND t.typreceive <> 0 AND coalesce(e.typsend <> 0 AND e.typreceive <> 0, true),
			coalesce(e.typname, t.typname) LIKE 'reg%'
		FROM pg_attribute a
		JOIN pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typlen = -1 AND t.typelem <> 0
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`, ident)
	if err != nil {
		return false, err
	}
	types := map[string]int64{}
	var col string
	var oid int64
	var sendRecv, objectRef bool
	ok := true
	if _, err := pgx.ForEachRow(rows, []any{&col, &oid, &sendRecv, &objectRef}, func() error {
		types[col] = oid
		ok = ok && sendRecv && !objectRef && oid < firstNormalObjectID
		return nil
	}); err != nil || !ok {
		return false, err
	}

	cols := tbl.Columns()
	for _, c := range cols {
		if _, found := types[c]; !found {
			return false, nil
		}
	}
	for _, i := range tbl.TextColumns() {
		switch types[cols[i]] {
		case oidText, oidBPChar, oidVarchar:
		default:
			return false, nil
		}
	}
	return true, nil
}

// majorVersion returns the major version at the start of a server_version
// parameter such as "15.18 (Debian 15.18-0+deb12u1)", or "" for none.
// Before PostgreSQL 10 the major version had two parts, such as "9.6".
func majorVersion(v string) string {
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	if end == 1 && end < len(v) && v[end] == '.' {
		end++
		for end < len(v) && v[end] >= '0' && v[end] <= '9' {
			end++
		}
	}
	return v[:end]
}
