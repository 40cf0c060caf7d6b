package pgproxy

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
)

// startupTimeout bounds the time from accept to a logged-in client.
const startupTimeout = 30 * time.Second

// forwardedParams are the startup parameters passed upstream; others, such
// as options (which could change settings the proxy protects), are dropped.
var forwardedParams = []string{"application_name", "client_encoding", "DateStyle", "TimeZone", "extra_float_digits", "intervalstyle"}

// rejectStartup sends a FATAL error to a client that has not logged in.
func rejectStartup(conn net.Conn, code, msg string) {
	be := pgproto3.NewBackend(conn, conn)
	be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
	_ = be.Flush()
	conn.Close()
}

// handle serves one client connection from startup to close.
func (s *Server) handle(ctx context.Context, conn net.Conn) {
	remote := conn.RemoteAddr().String()
	_ = conn.SetDeadline(s.clock().Add(startupTimeout))

	be, cin, startup, err := s.negotiate(conn)
	if err != nil {
		switch {
		case errors.Is(err, errCancelHandled):
		case errors.Is(err, io.EOF):
			// Port probes and health checks connect and close at once.
			s.log.Debug("pgproxy client closed before startup", "remote", remote)
		default:
			s.log.Info("pgproxy startup failed", "remote", remote, "err", err)
		}
		return
	}
	conn = cin.conn
	fail := func(code, msg string) {
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
		_ = be.Flush()
	}

	user := startup.Parameters["user"]
	if db := startup.Parameters["database"]; db != "" && db != s.cfg.Upstream.Database {
		fail("3D000", fmt.Sprintf("database %q is not served by this proxy; connect to %q", db, s.cfg.Upstream.Database))
		return
	}
	subject, err := s.authenticate(ctx, be, conn, user)
	if err != nil {
		s.log.Info("pgproxy authentication failed", "remote", remote, "user", user, "err", err)
		fail("28P01", fmt.Sprintf("password authentication failed for user %q", user))
		return
	}
	if q, ok := s.authz.(quarantineLister); ok {
		if _, quarantined := q.Quarantined()[subject]; quarantined {
			s.log.Warn("pgproxy rejected quarantined caller", "remote", remote, "spiffe_id", subject)
			fail("28000", "caller "+subject+" is quarantined")
			return
		}
	}

	params := map[string]string{}
	for _, k := range forwardedParams {
		if v, ok := startup.Parameters[k]; ok {
			params[k] = v
		}
	}
	if enc, ok := params["client_encoding"]; ok && !utf8Encoding(enc) {
		s.log.Warn("pgproxy rejected client encoding", "remote", remote, "client_encoding", enc)
		fail("22023", fmt.Sprintf("ward pgproxy supports client_encoding UTF8 only, not %s: set PGCLIENTENCODING=UTF8 or client_encoding=UTF8", enc))
		return
	}
	// Without a client_encoding the server would use the database's,
	// which need not be UTF8.
	params["client_encoding"] = "UTF8"
	upCfg, err := pgconn.ParseConfig("")
	if err != nil {
		fail("08006", "ward pgproxy cannot reach the database")
		return
	}
	s.fillConnConfig(upCfg, params)
	// pgconn passes its background reader as r and the connection as w.
	// The relay later reads and writes the socket itself where it can.
	var upIn *sockReader
	var upFE *pgproto3.Frontend
	upCfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		nc, _ := w.(net.Conn)
		upIn = newSockReader(r, nc)
		if nc != nil {
			w = newSockWriter(nc)
		}
		upFE = pgproto3.NewFrontend(upIn, w)
		return upFE
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Limits.ConnectTimeout)
	pc, err := pgconn.ConnectConfig(cctx, upCfg)
	cancel()
	if err != nil {
		// The pgconn error names host and user, never the password.
		s.log.Error("pgproxy upstream connect failed", "remote", remote, "upstream", s.cfg.Upstream.Address, "err", err)
		fail("08006", "ward pgproxy cannot reach the database")
		return
	}
	up, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		fail("08006", "ward pgproxy cannot reach the database")
		return
	}

	if up.Frontend != upFE || upIn.conn == nil {
		upIn = nil
	} else {
		upIn.useSocket()
	}
	// Where useSocket returns false, the relay reads as the startup did.
	cin.useSocket()
	sess := &session{
		srv: s, ctx: ctx, client: conn, be: be, out: newSockWriter(conn), up: up.Conn, fe: up.Frontend,
		clientIn: cin, upIn: upIn,
		subject: subject, user: user, upPID: up.PID, upKey: up.SecretKey,
		types: pgtype.NewMap(), stmts: map[string]*prepared{}, portals: map[string]*portal{},
		cursors: map[string]*statement{}, txStatus: up.TxStatus,
		log: s.log.With("remote", remote, "user", user, "spiffe_id", subject),
	}
	be.SetMaxBodyLen(s.cfg.Limits.MaxMessageBytes)
	up.Frontend.SetMaxBodyLen(s.cfg.Limits.MaxMessageBytes)
	pid, key := s.register(sess)
	defer s.unregister(pid)

	for k, v := range up.ParameterStatuses {
		if err := checkLexStatus(k, v); err != nil {
			s.log.Error("pgproxy rejected the upstream session", "remote", remote, "err", err)
			up.Conn.Close()
			fail("0A000", err.Error())
			return
		}
	}
	be.Send(&pgproto3.AuthenticationOk{})
	for k, v := range up.ParameterStatuses {
		if k == "session_authorization" {
			// The client sees its own login name, not the upstream role.
			// NOTE: current_user in SQL still returns the upstream role.
			v = user
		}
		be.Send(&pgproto3.ParameterStatus{Name: k, Value: v})
	}
	be.Send(&pgproto3.BackendKeyData{ProcessID: pid, SecretKey: binary.BigEndian.AppendUint32(nil, key)})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: up.TxStatus})
	if err := be.Flush(); err != nil {
		up.Conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	sess.log.Info("pgproxy session started")
	sess.run()
	sess.log.Info("pgproxy session ended")
}

var errCancelHandled = errors.New("cancel request handled")

// sslRequestLen is the length of an SSLRequest or GSSENCRequest packet.
const sslRequestLen = 8

// negotiate reads the startup packet. It responds to SSLRequest and
// GSSENCRequest and forwards a CancelRequest.
// The returned reader is the Backend's and holds the connection, which is
// a TLS connection when the client started TLS.
func (s *Server) negotiate(conn net.Conn) (*pgproto3.Backend, *sockReader, *pgproto3.StartupMessage, error) {
	in := newSockReader(conn, conn)
	be := pgproto3.NewBackend(in, newSockWriter(conn))
	// parsed counts the bytes of the startup packets read through in.
	var parsed int64
	for range 3 {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return nil, nil, nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			parsed += sslRequestLen
			if s.clientTLS == nil {
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return nil, nil, nil, err
				}
				continue
			}
			// The client must wait for the response before it sends more.
			// Bytes already read past the request were sent in the clear,
			// perhaps by someone in the path, and TLS would not cover them.
			if in.delivered > parsed {
				rejectStartup(conn, "08P01", "ward pgproxy received unencrypted data after SSLRequest")
				return nil, nil, nil, errors.New("client sent data after SSLRequest before the TLS handshake")
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return nil, nil, nil, err
			}
			tc := tls.Server(conn, s.clientTLS)
			if err := tc.Handshake(); err != nil {
				return nil, nil, nil, fmt.Errorf("TLS handshake: %w", err)
			}
			conn = tc
			in = newSockReader(conn, conn)
			be = pgproto3.NewBackend(in, newSockWriter(conn))
			parsed = 0
		case *pgproto3.GSSEncRequest:
			parsed += sslRequestLen
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return nil, nil, nil, err
			}
		case *pgproto3.CancelRequest:
			s.forwardCancel(m.ProcessID, m.SecretKey)
			return nil, nil, nil, errCancelHandled
		case *pgproto3.StartupMessage:
			// Protocol 3.2 changes the cancel key length and _pq_.
			// parameters are protocol extensions, none of which the proxy
			// implements, so it offers 3.0 without them.
			var unrecognized []string
			for k := range m.Parameters {
				if strings.HasPrefix(k, "_pq_.") {
					unrecognized = append(unrecognized, k)
				}
			}
			if m.ProtocolVersion != pgproto3.ProtocolVersion30 || len(unrecognized) > 0 {
				slices.Sort(unrecognized)
				be.Send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unrecognized})
			}
			if s.cfg.TLS != nil && s.cfg.TLS.Require {
				if _, ok := conn.(*tls.Conn); !ok {
					rejectStartup(conn, "28000", "ward pgproxy requires TLS (sslmode=require or stricter)")
					return nil, nil, nil, errors.New("client did not start TLS")
				}
			}
			p := *m
			p.Parameters = map[string]string{}
			for k, v := range m.Parameters {
				p.Parameters[k] = v
			}
			return be, in, &p, nil
		}
	}
	return nil, nil, nil, errors.New("too many startup negotiation messages")
}

// authenticate returns the caller's SPIFFE ID: from a verified ward client
// certificate, or from a SCRAM-SHA-256 login the LoginStore holds.
func (s *Server) authenticate(ctx context.Context, be *pgproto3.Backend, conn net.Conn, user string) (string, error) {
	if tc, ok := conn.(*tls.Conn); ok {
		if chains := tc.ConnectionState().VerifiedChains; len(chains) > 0 {
			for _, u := range chains[0][0].URIs {
				if u.Scheme == "spiffe" {
					return u.String(), nil
				}
			}
			return "", errors.New("client certificate has no SPIFFE ID")
		}
	}
	if user == "" {
		return "", errors.New("no user name")
	}
	if !s.limiter.allowed(user) {
		return "", fmt.Errorf("%w: too many failed logins for this user, try again later", ErrAuth)
	}

	login, err := s.logins.Lookup(ctx, user)
	valid := err == nil && login.Verifier != nil &&
		(login.Expires.IsZero() || s.clock().Before(login.Expires)) && strings.HasPrefix(login.SPIFFEID, "spiffe://")
	v := login.Verifier
	if !valid {
		v = s.decoyVerifier(user)
	}
	if err := scramExchange(be, v, s.rand); err != nil {
		// A client that hangs up during the exchange made no guess.
		if errors.Is(err, ErrAuth) {
			s.limiter.failed(user)
		}
		return "", err
	}
	if !valid {
		s.limiter.failed(user)
		return "", fmt.Errorf("%w: unknown or expired login", ErrNoLogin)
	}
	s.limiter.succeeded(user)
	return login.SPIFFEID, nil
}

// decoyVerifier returns a verifier no password matches, with a salt that is
// stable per user name, so an unknown user looks like a known one.
func (s *Server) decoyVerifier(user string) *Verifier {
	m := hmac.New(sha256.New, []byte("ward pgproxy decoy"))
	m.Write([]byte(user))
	sum := m.Sum(nil)
	v := &Verifier{Salt: sum[:16], Iterations: DefaultSCRAMIterations}
	copy(v.StoredKey[:], sum)
	_, _ = s.rand.Read(v.StoredKey[:])
	return v
}

// register gives a session the process ID and key its client uses to
// cancel queries.
func (s *Server) register(sess *session) (uint32, uint32) {
	var b [8]byte
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		_, _ = s.rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		if _, taken := s.sessions[pid]; pid == 0 || taken {
			continue
		}
		sess.cancelKey = binary.BigEndian.Uint32(b[4:])
		s.sessions[pid] = sess
		return pid, sess.cancelKey
	}
}

func (s *Server) unregister(pid uint32) {
	s.mu.Lock()
	delete(s.sessions, pid)
	s.mu.Unlock()
}

// forwardCancel sends a CancelRequest upstream for the session that owns
// pid and key; a wrong key is ignored, as PostgreSQL does.
func (s *Server) forwardCancel(pid uint32, key []byte) {
	s.mu.Lock()
	sess := s.sessions[pid]
	s.mu.Unlock()
	var want [4]byte
	if sess != nil {
		binary.BigEndian.PutUint32(want[:], sess.cancelKey)
	}
	if sess == nil || subtle.ConstantTimeCompare(key, want[:]) != 1 {
		return
	}

	conn, err := net.DialTimeout("tcp", s.cfg.Upstream.Address, s.cfg.Limits.ConnectTimeout)
	if err != nil {
		s.log.Warn("pgproxy cancel forward failed", "err", err)
		return
	}
	defer conn.Close()
	var c net.Conn = conn
	if s.upTLS != nil {
		// PostgreSQL accepts a cancel request inside TLS after SSLRequest.
		if _, err := conn.Write([]byte{0, 0, 0, 8, 4, 210, 22, 47}); err != nil {
			return
		}
		var answer [1]byte
		if _, err := conn.Read(answer[:]); err != nil || answer[0] != 'S' {
			return
		}
		tc := tls.Client(conn, s.upTLS)
		if err := tc.Handshake(); err != nil {
			return
		}
		c = tc
	}
	msg, err := (&pgproto3.CancelRequest{ProcessID: sess.upPID, SecretKey: sess.upKey}).Encode(nil)
	if err != nil {
		return
	}
	_, _ = c.Write(msg)
	// Wait for the server to close, so the cancel is delivered.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [1]byte
	_, _ = c.Read(buf[:])
}

// EndSessions closes every open session whose login is user (when user is
// not empty) or whose caller is spiffeID (when spiffeID is not empty), as
// when a login's lease is revoked or expires, or its identity is
// quarantined. It returns how many sessions it closed.
func (s *Server) EndSessions(user, spiffeID string) int {
	s.mu.Lock()
	var ending []*session
	for _, sess := range s.sessions {
		if (user != "" && sess.user == user) || (spiffeID != "" && sess.subject == spiffeID) {
			ending = append(ending, sess)
		}
	}
	s.mu.Unlock()
	for _, sess := range ending {
		sess.closeConns()
	}
	n := len(ending)
	if n > 0 {
		s.log.Info("pgproxy sessions ended", "user", user, "spiffe_id", spiffeID, "count", n)
	}
	return n
}
