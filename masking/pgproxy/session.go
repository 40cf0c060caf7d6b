package pgproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"ward.dev/ward/masking/rules"
)

// maxSessionObjects bounds the prepared statements, portals and cursors
// the proxy tracks for one session.
const maxSessionObjects = 10000

// maxAwaited bounds the responses a session may await, each of which the
// proxy tracks in memory (a few hundred bytes). A client that pipelines
// messages without reading their results fills PostgreSQL's socket
// buffers with requests, several hundred thousand of them, before
// backpressure stops it. A pgx batch of 5,000 queries awaits about 15,000.
const maxAwaited = 1 << 16

var errTooManyAwaited = errors.New("pgproxy: too many responses awaited")

// prepared is a statement the client prepared with Parse.
type prepared struct {
	sql string
	st  *statement // nil when the text has no or several statements
	// fields is the statement's row description from a Describe, or nil.
	fields []pgproto3.FieldDescription
	// schemaGen is the server's schema generation and analyzed the time
	// when st was traced; refreshStatement traces it again when either is
	// out of date.
	schemaGen uint64
	analyzed  time.Time
}

// portal is a statement bound with Bind.
type portal struct {
	stmt    *prepared
	formats []int16
	plan    *resultPlan
	// stamp records the policy and caches plan was decided from. stamped is
	// false when the decider offers no generation to compare.
	stamp   planStamp
	stamped bool
}

// setPlan records plan for pt with the stamp taken before it was made.
// It runs with mu held.
func (pt *portal) setPlan(plan *resultPlan, stamp planStamp, ok bool) {
	pt.plan, pt.stamp, pt.stamped = plan, stamp, ok
}

// planCurrent reports whether pt's plan still reflects the policy and the
// catalog: a reload between Bind and Execute must reach the rows.
func (s *session) planCurrent(pt *portal) bool {
	if !pt.stamped {
		return true
	}
	now, ok := s.planStamp()
	return ok && pt.stamp.current(now, s.srv.clock())
}

type expectKind uint8

const (
	expParse expectKind = iota
	expBind
	expDescribeStatement
	expDescribePortal
	expExecute
	expClose
	expSync
	expQuery
	expLocal
)

// expectation is one response the proxy awaits from upstream, in order.
type expectation struct {
	kind     expectKind
	injected bool // sent by the proxy: the response is not relayed
	stmt     *prepared
	portal   *portal
	// A simple query's statements and the current one's plan.
	stmts []*statement
	idx   int
	plan  *resultPlan
	copy  *resultPlan
	// copyFormat is the row format of the current COPY; headerPending is
	// set until its header line has passed.
	copyFormat    copyFormat
	headerPending bool
	// local contains the messages of a response the proxy makes itself.
	local []pgproto3.BackendMessage
	// undo reverts what the message changed in the session's statements
	// or portals when upstream fails or skips it. It runs with mu held.
	undo func()
}

// session relays one client connection. Two goroutines use it: run reads
// from the client and relayUpstream reads from upstream. mu guards the
// fields they share, and wmu serializes writes to the client.
type session struct {
	srv     *Server
	ctx     context.Context
	client  net.Conn
	be      *pgproto3.Backend
	up      net.Conn
	fe      *pgproto3.Frontend
	subject string
	user    string
	log     *slog.Logger
	types   *pgtype.Map // used only by relayUpstream
	arena   []byte      // masked values of the row being relayed, used only by relayUpstream

	// clientIn and upIn are the readers beneath be and fe. upIn is nil
	// when fe reads through pgconn's own reader.
	clientIn *sockReader
	upIn     *sockReader
	// upUnflushed counts the messages sent to fe since its last flush. It
	// is used only by relayClient.
	upUnflushed int

	upPID     uint32
	upKey     []byte
	cancelKey uint32

	mu       sync.Mutex
	pending  []*expectation
	stmts    map[string]*prepared
	portals  map[string]*portal
	cursors  map[string]*statement
	txStatus byte
	// skipping is set after the proxy rejected an extended-protocol
	// message: the client's messages up to Sync are dropped.
	skipping bool
	// schemaDirty is set once a statement that may change the catalog was
	// sent, so the next ReadyForQuery empties the analyses that rest on it.
	schemaDirty bool
	// schemaTx is set while a transaction that changed the schema is open:
	// other sessions see the change only at its commit, so the schema
	// counts as changed again when it ends.
	schemaTx bool
	// discarding is set after an upstream error in the extended protocol
	// when the client's Sync is not queued yet: expectations up to it are
	// not queued, since upstream answers none of them.
	discarding bool

	// wmu guards the client writes: out, and wbuf with the messages not
	// yet written to out.
	wmu       sync.Mutex
	out       io.Writer
	wbuf      []byte
	encodeErr error

	plans planCache
}

// run relays until either side closes.
func (s *session) run() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := s.relayUpstream()
		var tooBig *pgproto3.ExceededMaxBodyLenErr
		switch {
		case errors.As(err, &tooBig):
			s.log.Warn("pgproxy upstream message too large", "err", err)
			s.sendFatal("54000", fmt.Sprintf("a message of %d bytes from the database exceeds the proxy's limit of %d bytes (max_message_bytes)", tooBig.ActualBodyLen, tooBig.MaxExpectedBodyLen))
		case errors.Is(err, errClientWrite):
			// A client that went away while results were relayed.
			s.log.Info("pgproxy client connection lost", "err", err)
		case err != nil && !isClosed(err) && !errors.Is(err, errLexSettings):
			s.log.Warn("pgproxy upstream relay ended", "err", err)
			s.sendFatal("08006", "ward pgproxy lost the connection to the database")
		}
		s.closeConns()
	}()
	// A client that closes its side ends the session at once, even if it
	// half-closed and still reads. PostgreSQL would respond to what it
	// sent, but a proxy cannot tell a half-close from a close, and a
	// closed client would hold its connection slot until its query ended.
	if err := s.relayClient(); err != nil && !isClosed(err) {
		s.log.Info("pgproxy client relay ended", "err", err)
		var tooBig *pgproto3.ExceededMaxBodyLenErr
		if errors.As(err, &tooBig) {
			s.sendFatal("54000", fmt.Sprintf("message of %d bytes exceeds the proxy's limit of %d bytes", tooBig.ActualBodyLen, tooBig.MaxExpectedBodyLen))
		}
	}
	s.closeConns()
	<-done
}

// closeConns closes both connections of the session. When one relay ends,
// the other may be blocked writing to either side: to a client that
// stopped reading, or upstream to a server that stopped reading because
// the proxy stopped reading its results. Closing a socket waits for a
// relay step running inside that socket's raw read, and such a step may be
// blocked writing to the other socket. So a deadline in the past first
// wakes every blocked read and write on both, and only then are they
// closed.
func (s *session) closeConns() {
	past := time.Unix(1, 0)
	if s.up != nil {
		_ = s.up.SetDeadline(past)
	}
	_ = s.client.SetDeadline(past)
	if s.up != nil {
		s.up.Close()
	}
	s.client.Close()
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

func (s *session) sendFatal(code, msg string) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
	_ = s.flush()
}

func (s *session) push(e *expectation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.discarding {
		// Upstream ignores everything up to Sync after an error, so
		// nothing but the Sync (or a simple query) gets a response.
		if e.kind != expSync && e.kind != expQuery && !e.endsCycle() {
			if e.undo != nil {
				e.undo()
			}
			return
		}
		s.discarding = false
	}
	s.pending = append(s.pending, e)
}

// head returns the oldest awaited response, or nil.
func (s *session) head() *expectation {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return nil
	}
	return s.pending[0]
}

func (s *session) pop() {
	s.mu.Lock()
	if len(s.pending) > 0 {
		s.pending = s.pending[1:]
	}
	s.mu.Unlock()
}

// flushLocal sends the responses the proxy made itself once every earlier
// response has been relayed.
func (s *session) flushLocal() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sent := false
	for len(s.pending) > 0 && s.pending[0].kind == expLocal {
		e := s.pending[0]
		s.pending = s.pending[1:]
		s.wmu.Lock()
		for _, m := range e.local {
			if rfq, ok := m.(*pgproto3.ReadyForQuery); ok {
				rfq.TxStatus = s.txStatus
			}
			s.send(m)
		}
		s.wmu.Unlock()
		sent = true
	}
	if !sent {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.flush()
}

// rejection returns an ErrorResponse for a rejected statement.
func rejection(format string, args ...any) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{
		Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42501",
		Message: fmt.Sprintf(format, args...),
	}
}

// relayClient forwards client messages upstream, recording what responses
// to expect and rejecting what policy forbids.
func (s *session) relayClient() error {
	return s.clientIn.relayIdle(s.relayClientMessage, s.flushUpstream)
}

// relayClientMessage relays one client message.
func (s *session) relayClientMessage() error {
	msg, err := s.be.Receive()
	if err != nil {
		return err
	}

	s.mu.Lock()
	skipping, awaited := s.skipping, len(s.pending)
	s.mu.Unlock()
	if awaited >= maxAwaited {
		// A client that reads nothing would block this write for ever.
		_ = s.client.SetWriteDeadline(time.Now().Add(time.Second))
		s.sendFatal("54000", fmt.Sprintf("more than %d responses awaited: read the results of a pipeline before sending more", maxAwaited))
		return errTooManyAwaited
	}
	if skipping {
		if flush, ok := msg.(*pgproto3.Flush); ok {
			// The responses to the messages before the rejected one, and
			// then the rejection, reach the client only once upstream
			// flushes them.
			s.fe.Send(flush)
			s.upUnflushed = 0
			return s.fe.Flush()
		}
		if _, ok := msg.(*pgproto3.Sync); !ok {
			return nil
		}
		s.mu.Lock()
		s.skipping = false
		s.mu.Unlock()
	}

	switch m := msg.(type) {
	case *pgproto3.Query:
		stmts, perr := s.srv.statements.parse(s.ctx, s.srv.catalog, m.String)
		if rej := s.check(stmts, perr); rej != nil {
			s.logRejection(rej)
			s.push(&expectation{kind: expLocal, local: []pgproto3.BackendMessage{rej, &pgproto3.ReadyForQuery{}}})
			if err := s.flushLocal(); err != nil {
				return err
			}
			return nil
		}
		s.push(&expectation{kind: expQuery, stmts: stmts})
		s.fe.Send(m)

	case *pgproto3.Parse:
		p := &prepared{sql: m.Query, schemaGen: s.srv.schemaGen.Load(), analyzed: s.srv.clock()}
		stmts, perr := s.srv.statements.parse(s.ctx, s.srv.catalog, m.Query)
		if perr == nil && len(stmts) == 1 {
			p.st = stmts[0]
		}
		if rej := s.check(stmts, perr); rej != nil {
			if err := s.rejectExtended(rej); err != nil {
				return err
			}
			return nil
		}
		s.mu.Lock()
		prev, replaces := s.stmts[m.Name]
		full := !replaces && len(s.stmts) >= maxSessionObjects
		if !full {
			s.stmts[m.Name] = p
		}
		s.mu.Unlock()
		if full {
			if err := s.rejectExtended(rejection("ward pgproxy allows at most %d prepared statements per session; close some first", maxSessionObjects)); err != nil {
				return err
			}
			return nil
		}
		// If upstream fails or skips this Parse (a name already in
		// use, an earlier error in the batch), its statement keeps the
		// old text, so the proxy must keep the old analysis too.
		name := m.Name
		s.push(&expectation{kind: expParse, stmt: p, undo: undoNamed(s.stmts, name, p, prev, replaces)})
		s.fe.Send(m)

	case *pgproto3.Bind:
		s.mu.Lock()
		p := s.stmts[m.PreparedStatement]
		s.mu.Unlock()
		if p == nil {
			p = &prepared{}
		}
		if rej := s.refreshStatement(p); rej != nil {
			if err := s.rejectExtended(rej); err != nil {
				return err
			}
			return nil
		}
		pt := &portal{stmt: p, formats: slices.Clone(m.ResultFormatCodes)}
		s.mu.Lock()
		fields, st := p.fields, p.st
		s.mu.Unlock()
		if fields != nil {
			stamp, stamped := s.planStamp()
			var plan *resultPlan
			plan, err = s.plan(st, withFormats(fields, pt.formats))
			pt.setPlan(plan, stamp, stamped)
			if err != nil {
				if err := s.rejectExtended(rejection("%v", err)); err != nil {
					return err
				}
				return nil
			}
		}
		s.mu.Lock()
		if _, replaces := s.portals[m.DestinationPortal]; !replaces && len(s.portals) >= maxSessionObjects {
			// Portals end with their transaction and Close is optional,
			// so the oldest names may be stale. Dropping them is safe:
			// an Execute of an unknown portal is described again.
			clear(s.portals)
		}
		name := m.DestinationPortal
		prev, replaces := s.portals[name]
		s.portals[name] = pt
		if name != "" {
			// FETCH can read a named portal like a cursor.
			s.mergeCursor(name, p.st)
		}
		s.mu.Unlock()
		s.push(&expectation{kind: expBind, portal: pt, undo: undoNamed(s.portals, name, pt, prev, replaces)})
		s.fe.Send(m)

	case *pgproto3.Describe:
		e := &expectation{kind: expDescribePortal}
		s.mu.Lock()
		if m.ObjectType == 'S' {
			e.kind, e.stmt = expDescribeStatement, s.stmts[m.Name]
		} else {
			e.portal = s.portals[m.Name]
		}
		s.mu.Unlock()
		s.push(e)
		s.fe.Send(m)

	case *pgproto3.Execute:
		s.mu.Lock()
		pt := s.portals[m.Portal]
		if pt == nil {
			pt = &portal{stmt: &prepared{}}
		} else if pt.plan != nil && !s.planCurrent(pt) {
			// A new portal value keeps the old plan for rows of an
			// earlier Execute still on the way.
			pt = &portal{stmt: pt.stmt, formats: pt.formats}
			s.portals[m.Portal] = pt
		}
		planned := pt.plan != nil
		s.mu.Unlock()
		if !planned {
			// The rows need a plan, so the proxy sends its own Describe
			// of the portal and does not relay the response.
			s.push(&expectation{kind: expDescribePortal, portal: pt, injected: true})
			s.fe.Send(&pgproto3.Describe{ObjectType: 'P', Name: m.Portal})
		}
		s.push(&expectation{kind: expExecute, portal: pt})
		s.fe.Send(m)

	case *pgproto3.Close:
		s.mu.Lock()
		if m.ObjectType == 'S' {
			delete(s.stmts, m.Name)
		} else {
			delete(s.portals, m.Name)
		}
		s.mu.Unlock()
		s.push(&expectation{kind: expClose})
		s.fe.Send(m)

	case *pgproto3.Sync:
		s.push(&expectation{kind: expSync})
		s.fe.Send(m)

	case *pgproto3.FunctionCall:
		// The fast-path function call returns values without a row
		// description, so nothing could trace or mask them.
		s.push(&expectation{kind: expLocal, local: []pgproto3.BackendMessage{
			rejection("ward pgproxy does not allow the fast-path function call protocol"), &pgproto3.ReadyForQuery{}}})
		if err := s.flushLocal(); err != nil {
			return err
		}
		return nil

	case *pgproto3.Terminate:
		s.fe.Send(m)
		_ = s.fe.Flush()
		return errRelayDone

	default:
		// Flush, CopyData, CopyDone, CopyFail.
		s.fe.Send(m)
	}
	// While the client has sent more than the relay has read, messages
	// wait and go upstream together in one write. The relay flushes them
	// before it waits for more client data (flushUpstream), so nothing the
	// client sent before waiting is held back. COPY data goes at once, so
	// that large messages do not pile up. Without raw socket reads (TLS)
	// the relay cannot tell when the client is idle and flushes each
	// message.
	s.upUnflushed++
	switch msg.(type) {
	case *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
	default:
		if s.clientIn.waitsIdle() && s.upUnflushed < maxUnflushed {
			return nil
		}
	}
	s.upUnflushed = 0
	return s.fe.Flush()
}

// flushUpstream sends upstream the messages relayClientMessage left
// waiting. The relay calls it before it waits for client data.
func (s *session) flushUpstream() error {
	if s.upUnflushed == 0 {
		return nil
	}
	s.upUnflushed = 0
	return s.fe.Flush()
}

// undoNamed returns a function that puts back what objects held under name
// before cur replaced it (prev, when replaces is set), unless a later
// message has replaced cur already.
func undoNamed[T comparable](objects map[string]T, name string, cur, prev T, replaces bool) func() {
	return func() {
		if objects[name] != cur {
			return
		}
		if replaces {
			objects[name] = prev
		} else {
			delete(objects, name)
		}
	}
}

// logRejection logs a rejected statement. A syntax error quotes the text
// near the error, which may be a value, so only its SQLSTATE is logged.
func (s *session) logRejection(rej *pgproto3.ErrorResponse) {
	if rej.Code == "42601" {
		s.log.Info("pgproxy rejected statement", "sqlstate", rej.Code, "reason", "syntax error")
		return
	}
	s.log.Info("pgproxy rejected statement", "sqlstate", rej.Code, "reason", rej.Message)
}

// rejectExtended sends an error for an extended-protocol message and
// drops the client's messages up to Sync, as PostgreSQL does after an error.
func (s *session) rejectExtended(rej *pgproto3.ErrorResponse) error {
	s.logRejection(rej)
	s.mu.Lock()
	s.skipping = true
	s.mu.Unlock()
	s.push(&expectation{kind: expLocal, local: []pgproto3.BackendMessage{rej}})
	return s.flushLocal()
}

// check returns the error that rejects statements, or nil to let them
// through. It also records the cursors they declare. Text the parser
// rejects is not sent upstream, since its writes and lineage are unknown.
func (s *session) check(stmts []*statement, parseErr error) *pgproto3.ErrorResponse {
	if parseErr != nil {
		return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42601", Message: parseErr.Error()}
	}
	for _, st := range stmts {
		if st.protected != "" {
			return rejection("ward pgproxy does not allow %s, because the proxy's masking and write checks depend on it", st.protected)
		}
		if st.rejected != "" {
			return rejection("ward pgproxy does not allow %s", st.rejected)
		}
		if st.write && s.srv.cfg.Writes == WritesReadOnly {
			return rejection("ward pgproxy is read-only: %s is not allowed", st.writeWhat)
		}
		if st.ddl && s.srv.cfg.DDL != DDLAllow {
			return rejection("ward pgproxy rejects %s: a schema change can redefine what a masked name reads (set ddl: allow to permit schema changes)", st.writeWhat)
		}
		// Catalog views that sample column values or show other sessions'
		// statements are refused in every mode: they would return values
		// in clear without naming any masked column.
		if len(st.statsViews) > 0 {
			return rejection("ward pgproxy: %s exposes column values and is not allowed", st.statsViews[0])
		}
		if !s.srv.cfg.Strict {
			continue
		}
		for _, c := range st.filters.list() {
			if s.hidden(c) {
				return rejection("ward pgproxy strict mode: column %s is masked for you and cannot be used in WHERE, JOIN, ORDER BY, GROUP BY or DISTINCT", c)
			}
		}
		if st.filters.unknown {
			return rejection("ward pgproxy strict mode: the columns a condition reads cannot be established")
		}
		for _, c := range st.computed.list() {
			if s.hidden(c) {
				return rejection("ward pgproxy strict mode: column %s is masked for you and may be selected only as it is, not computed on", c)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range stmts {
		if st.ddl {
			s.schemaDirty = true
		}
		// A statement that SQL prepares or deallocates is no longer the one
		// the proxy traced under that name. Forgetting it makes a Bind of
		// the name untraced, so its computed outputs are redacted.
		if st.prepares != "" {
			delete(s.stmts, st.prepares)
		}
		if st.deallocatesAll {
			clear(s.stmts)
		}
		if st.declares != "" {
			s.mergeCursor(st.declares, st)
			// Execute can run a cursor like a portal. An older portal of the
			// same name is gone once the cursor exists, so it is forgotten
			// and an Execute of the name is described afresh.
			delete(s.portals, st.declares)
		}
	}
	return nil
}

// refreshStatement traces p's text again when the catalog may have changed
// since p was traced: a statement through any session of the proxy
// changed the schema, or catalogTTL passed, which covers changes made
// around the proxy. PostgreSQL plans a prepared statement again after
// such a change, so a statement over a replaced view returns the view's
// new columns, and its old lineage would mask the wrong ones. A statement
// that the new analysis rejects (in strict mode, say) is rejected at
// Bind.
func (s *session) refreshStatement(p *prepared) *pgproto3.ErrorResponse {
	if p.sql == "" {
		return nil
	}
	gen, now := s.srv.schemaGen.Load(), s.srv.clock()
	s.mu.Lock()
	current := p.schemaGen == gen && now.Sub(p.analyzed) < catalogTTL
	s.mu.Unlock()
	if current {
		return nil
	}
	stmts, perr := s.srv.statements.parse(s.ctx, s.srv.catalog, p.sql)
	if rej := s.check(stmts, perr); rej != nil {
		return rej
	}
	var st *statement
	if len(stmts) == 1 {
		st = stmts[0]
	}
	s.mu.Lock()
	p.st, p.schemaGen, p.analyzed = st, gen, now
	s.mu.Unlock()
	return nil
}

// forgetAnalyses drops what this session traced before its own statement
// changed the catalog: a prepared statement or cursor over a replaced view
// would otherwise keep the view's old lineage. Computed outputs of such
// statements are then redacted. It runs with mu held.
// Other sessions trace their prepared statements again at the next Bind
// (refreshStatement).
func (s *session) forgetAnalyses() {
	for _, p := range s.stmts {
		p.st = nil
	}
	for name := range s.cursors {
		s.cursors[name] = nil
	}
}

// mergeCursor adds the lineage of st to the cursor name, for FETCH. The
// proxy cannot tell for certain which DECLARE of a name the server holds:
// one may have failed, been rolled back, or only been parsed. So each
// output keeps the sources of every statement declared under the name in
// this session. Outputs that differ in number are unknown and redacted.
// It runs with mu held.
func (s *session) mergeCursor(name string, st *statement) {
	if len(s.cursors) >= maxSessionObjects {
		// A FETCH from a forgotten cursor has unknown lineage and is
		// redacted.
		clear(s.cursors)
	}
	old, ok := s.cursors[name]
	switch {
	case !ok:
		s.cursors[name] = st
		return
	case st == nil || old == nil:
		s.cursors[name] = nil
		return
	}
	merged := &statement{lineageErr: errLineage}
	if old.outputs != nil && st.outputs != nil && len(old.outputs) == len(st.outputs) {
		merged.lineageErr = nil
		merged.outputs = make([]outputColumn, len(st.outputs))
		for i := range st.outputs {
			merged.outputs[i].name = st.outputs[i].name
			merged.outputs[i].src.union(old.outputs[i].src)
			merged.outputs[i].src.union(st.outputs[i].src)
		}
	}
	s.cursors[name] = merged
}

// hidden reports whether the caller sees c only masked: Casbin denies
// unmask and the rules change the column.
func (s *session) hidden(c rules.Column) bool {
	if s.unmasked(c) {
		return false
	}
	m, err := s.srv.maskers.forColumn(s.ctx, c)
	return err != nil || m != nil
}

func (s *session) unmasked(c rules.Column) bool {
	return s.srv.authz.Decide(s.subject, s.srv.cfg.Environment, c.Object(), "unmask").Allowed
}
