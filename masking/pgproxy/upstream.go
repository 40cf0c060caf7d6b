package pgproxy

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// errClientWrite wraps a failed write to the client.
var errClientWrite = errors.New("writing to the client failed")

// maxUnflushed bounds how many client messages are held before a flush
// upstream.
const maxUnflushed = 128

// flushBytes is how much relayed output the client write buffer holds
// before it is written, when more upstream data waits to be relayed.
const flushBytes = 32 << 10

// maxKeptWriteBuffer bounds the client write buffer a session keeps
// between flushes. A larger one, grown for large messages, is dropped.
const maxKeptWriteBuffer = 2 * flushBytes

// relayUpstream forwards upstream messages to the client, masking rows,
// COPY data, errors and notices on the way.
func (s *session) relayUpstream() error {
	// suppress drops upstream messages up to ReadyForQuery after the proxy
	// replaced a result with an error.
	suppress := false
	// With raw socket reads the relay also flushes when the socket has no
	// more data, so complete rows do not wait behind a partial message.
	idle := func() error {
		s.wmu.Lock()
		defer s.wmu.Unlock()
		if len(s.wbuf) == 0 {
			return nil
		}
		return s.flush()
	}
	// Output batched for idle is written even when the relay ends: a
	// server that closes right after its last message leaves no idle time.
	defer func() { _ = idle() }()
	return s.upIn.relayIdle(func() error {
		msg, err := s.fe.Receive()
		if err != nil {
			return err
		}
		head := s.head()
		relay := !suppress
		popped := false
		pop := func() {
			s.pop()
			popped = true
		}

		switch m := msg.(type) {
		case *pgproto3.ParseComplete, *pgproto3.BindComplete, *pgproto3.CloseComplete:
			if head != nil && (head.kind == expParse || head.kind == expBind || head.kind == expClose) {
				pop()
			}

		case *pgproto3.ParameterDescription:
			if head != nil && head.injected {
				relay = false
			}

		case *pgproto3.RowDescription:
			fields := m.Fields
			switch {
			case head == nil:
				relay = false
			case head.kind == expDescribeStatement:
				if head.stmt != nil {
					s.mu.Lock()
					head.stmt.fields = cloneFields(fields)
					s.mu.Unlock()
				}
				pop()
			case head.kind == expDescribePortal:
				if head.injected {
					relay = false
				}
				if head.portal != nil {
					stamp, stamped := s.planStamp()
					plan, err := s.plan(head.portal.stmt.st, fields)
					if err != nil {
						s.replaceWithError(err)
						suppress, relay = true, false
					}
					s.mu.Lock()
					head.portal.setPlan(plan, stamp, stamped)
					s.mu.Unlock()
				}
				pop()
			case head.kind == expQuery:
				head.plan, err = s.plan(head.current(), fields)
				if err != nil {
					s.replaceWithError(err)
					suppress, relay = true, false
				}
			}

		case *pgproto3.NoData:
			if head != nil && (head.kind == expDescribeStatement || head.kind == expDescribePortal) {
				if head.injected {
					relay = false
				}
				if head.portal != nil {
					s.mu.Lock()
					head.portal.plan = &resultPlan{}
					s.mu.Unlock()
				}
				pop()
			}

		case *pgproto3.DataRow:
			plan := s.currentPlan(head)
			if plan == nil {
				// Rows without a known description are never relayed.
				relay = false
				break
			}
			s.arena = maskRow(plan, s.types, m, s.arena[:0])
			if cap(s.arena) > maxKeptWriteBuffer {
				// The row is encoded below, so a large arena may go.
				defer func() { s.arena = nil }()
			}

		case *pgproto3.CommandComplete, *pgproto3.EmptyQueryResponse, *pgproto3.PortalSuspended:
			if head != nil && head.kind == expQuery {
				head.idx++
				head.plan, head.copy = nil, nil
			} else if head != nil && head.kind == expExecute {
				pop()
			}

		case *pgproto3.CopyOutResponse:
			if head != nil && head.kind == expQuery {
				head.copy, err = s.copyPlan(head.current(), m)
				if st := head.current(); st != nil {
					head.copyFormat = st.copyFormat
					head.headerPending = st.copyFormat.header
				}
				if err != nil {
					s.replaceWithError(err)
					suppress, relay = true, false
				}
			} else {
				s.replaceWithError(fmt.Errorf("%w: COPY TO STDOUT is allowed only in a simple query", ErrRejected))
				suppress, relay = true, false
			}

		case *pgproto3.CopyData:
			if head == nil || head.copy == nil {
				// CopyBoth or an untraced COPY: nothing leaves unmasked.
				relay = false
				break
			}
			if head.headerPending {
				// The header line holds column names, not values.
				head.headerPending = false
				break
			}
			line, ok := maskCopyRow(head.copy, s.types, head.copyFormat, m.Data)
			if !ok {
				relay = false
				break
			}
			m.Data = line

		case *pgproto3.ErrorResponse:
			scrubError(m)
			if head != nil && head.kind != expQuery {
				// Upstream skips to Sync after an error, and so do the
				// expectations. A rejection the proxy queued in the same
				// batch is dropped too, so the client sees one error.
				s.mu.Lock()
				var skipped []*expectation
				for len(s.pending) > 0 && s.pending[0].kind != expSync && !s.pending[0].endsCycle() {
					skipped = append(skipped, s.pending[0])
					s.pending = s.pending[1:]
				}
				// Newest first, so each name returns to its state before
				// the failed message.
				for i := len(skipped) - 1; i >= 0; i-- {
					if skipped[i].undo != nil {
						skipped[i].undo()
					}
				}
				s.discarding = len(s.pending) == 0
				s.mu.Unlock()
				popped = true
			}

		case *pgproto3.ParameterStatus:
			if err := checkLexStatus(m.Name, m.Value); err != nil {
				// Statements already sent may have been lexed otherwise,
				// so nothing more is relayed from this session.
				s.log.Error("pgproxy ended a session whose lexing settings changed", "err", err)
				s.sendFatal("0A000", err.Error())
				return errLexSettings
			}

		case *pgproto3.NoticeResponse:
			scrubNotice(m)

		case *pgproto3.NotificationResponse:
			// A payload is whatever a trigger or client put there, which
			// can be a masked value.
			if m.Payload != "" {
				m.Payload = redactedText
			}

		case *pgproto3.ReadyForQuery:
			s.mu.Lock()
			s.txStatus = m.TxStatus
			dirty := s.schemaDirty
			if dirty {
				s.schemaDirty = false
				s.forgetAnalyses()
				s.schemaTx = m.TxStatus != 'I'
			} else if s.schemaTx && m.TxStatus == 'I' {
				// Another session may have traced a statement against the
				// catalog of before the commit.
				s.schemaTx = false
				dirty = true
			}
			s.mu.Unlock()
			if dirty {
				s.srv.schemaChanged()
			}
			if head != nil && (head.kind == expSync || head.kind == expQuery) {
				pop()
			}
			relay, suppress = true, false
		}

		if relay {
			s.wmu.Lock()
			s.send(msg)
			// Messages are batched while more upstream data is buffered,
			// up to a bound that keeps the write buffer small. What a
			// partial message keeps buffered goes out in idle.
			var err error
			if s.fe.ReadBufferLen() == 0 && s.upIn.buffered() == 0 || len(s.wbuf) >= flushBytes {
				err = s.flush()
			}
			s.wmu.Unlock()
			if err != nil {
				return err
			}
		}
		if popped {
			return s.flushLocal()
		}
		return nil
	}, idle)
}

// send encodes msg for the client after the messages already buffered.
// It runs with wmu held.
func (s *session) send(msg pgproto3.BackendMessage) {
	if s.encodeErr != nil {
		return
	}
	buf, err := msg.Encode(s.wbuf)
	if err != nil {
		s.encodeErr = err
		return
	}
	s.wbuf = buf
}

// flush writes the buffered messages to the client in one write, or
// returns the error from encoding a message passed to send. Unlike
// pgproto3.Backend.Flush, it keeps the buffer up to maxKeptWriteBuffer,
// so relaying many rows does not grow a new buffer for every flush. It
// runs with wmu held.
func (s *session) flush() error {
	if err := s.encodeErr; err != nil {
		s.encodeErr = nil
		s.wbuf = s.wbuf[:0]
		return err
	}
	_, err := s.out.Write(s.wbuf)
	if err != nil {
		err = fmt.Errorf("%w: %w", errClientWrite, err)
	}
	if cap(s.wbuf) > maxKeptWriteBuffer {
		s.wbuf = nil
	} else {
		s.wbuf = s.wbuf[:0]
	}
	return err
}

// endsCycle reports whether a local response ends with ReadyForQuery, as
// the answer to a rejected simple query does.
func (e *expectation) endsCycle() bool {
	if e.kind != expLocal || len(e.local) == 0 {
		return false
	}
	_, ok := e.local[len(e.local)-1].(*pgproto3.ReadyForQuery)
	return ok
}

// current returns the statement of a simple query whose results arrive
// now, or nil.
func (e *expectation) current() *statement {
	if e.idx < len(e.stmts) {
		return e.stmts[e.idx]
	}
	return nil
}

func (s *session) currentPlan(head *expectation) *resultPlan {
	if head == nil {
		return nil
	}
	switch head.kind {
	case expQuery:
		return head.plan
	case expExecute:
		if head.portal != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			return head.portal.plan
		}
	}
	return nil
}

// replaceWithError sends an error in place of a result the proxy rejects.
func (s *session) replaceWithError(err error) {
	s.log.Info("pgproxy rejected result", "reason", err.Error())
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.send(rejection("%v", err))
	// The rows that follow are dropped, so no relayed message would flush
	// the error before ReadyForQuery: a client that sent Flush, not Sync,
	// would wait for it.
	if err := s.flush(); err != nil {
		s.log.Info("pgproxy could not send a rejection to the client", "err", err)
	}
}

// copyPlan returns the plan for COPY TO STDOUT rows. The proxy parses the
// text and CSV formats with a delimiter and header of their own, so a COPY
// in binary format or with other options (QUOTE, NULL, FORCE_QUOTE) is
// rejected when any column needs masking.
func (s *session) copyPlan(st *statement, m *pgproto3.CopyOutResponse) (*resultPlan, error) {
	fields := make([]pgproto3.FieldDescription, len(m.ColumnFormatCodes))
	for i := range fields {
		fields[i].DataTypeOID = 25
		fields[i].Name = []byte("copy")
	}
	plan, err := s.plan(st, fields)
	if err != nil {
		return nil, err
	}
	if plan.masks && (m.OverallFormat != 0 || st == nil || st.copyFormat.unsupported) {
		return nil, fmt.Errorf("%w: COPY TO STDOUT of masked columns works only in text or CSV format without QUOTE, ESCAPE, NULL or FORCE options", ErrRejected)
	}
	return plan, nil
}

func cloneFields(f []pgproto3.FieldDescription) []pgproto3.FieldDescription {
	out := make([]pgproto3.FieldDescription, len(f))
	for i, fd := range f {
		out[i] = fd
		out[i].Name = bytes.Clone(fd.Name)
	}
	return out
}
