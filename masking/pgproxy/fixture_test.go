package pgproxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"ward.dev/ward/authz"
	"ward.dev/ward/crypto/secret"
	"ward.dev/ward/masking/pgproxy"
	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/transform"
	"ward.dev/ward/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

const (
	testerID  = "spiffe://ward.test/ns/qa/sa/tester"
	supportID = "spiffe://ward.test/ns/support/sa/agent"
	testerPW  = "tester-login-pw-1"
	supportPW = "support-login-pw-2"
)

// testRules mask the personal columns of Chinook's customer and employee.
const testRules = `version: 1
default: keep
columns:
  public.customer.first_name: {transformer: fake, kind: first_name}
  public.customer.last_name: {transformer: fake, kind: last_name}
  public.customer.company: redact
  public.customer.address: redact
  public.customer.postal_code: redact
  public.customer.phone: {transformer: partial, keep_last: 2}
  public.customer.fax: {transformer: partial, keep_last: 2}
  public.customer.email: email
  public.employee.first_name: {transformer: fake, kind: first_name}
  public.employee.last_name: {transformer: fake, kind: last_name}
  public.employee.address: redact
  public.employee.phone: {transformer: partial, keep_last: 2}
  public.employee.fax: {transformer: partial, keep_last: 2}
  public.employee.email: email
  public.employee.birth_date: {transformer: date-shift, max_days: 300}
  public.contact_log.email: email
  public.invoice.invoice_date: {transformer: date-shift, entity: customer_id, max_days: 300}
  public.contact_note.email: email
  public.signup.email: email
  public.person.email: email
  public.person.phone: {transformer: partial, keep_last: 2}
  public.person.name: redact
`

const testPolicy = `p, role:support, test, column/public.customer.email, unmask, allow
g, ` + testerID + `, role:tester, test
g, ` + supportID + `, role:support, test
`

// chinook is one cluster with Chinook loaded and an upstream role, shared
// by the tests of this package.
var chinook struct {
	once     sync.Once
	pg       *pgtest.Server
	password string
	err      string
}

const upstreamRole = "ward_upstream"

func chinookServer(t testing.TB) (*pgtest.Server, string) {
	t.Helper()
	pg := pgtest.Shared(t)
	chinook.once.Do(func() {
		chinook.pg = pg
		path := "../../test/testdata/chinook/chinook.sql"
		if _, err := os.Stat(path); err != nil {
			path = "/work/shared/datasets/chinook/chinook.sql"
		}
		cmd := exec.Command(filepath.Join(pg.BinDir(), "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
			"-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port()), "-U", pgtest.Superuser, "-d", "postgres", "-f", path)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+pg.Password())
		if out, err := cmd.CombinedOutput(); err != nil {
			chinook.err = "loading chinook: " + err.Error() + ": " + string(out)
			return
		}
		raw := make([]byte, 12)
		_, _ = rand.Read(raw)
		chinook.password = "up-" + hex.EncodeToString(raw)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, pg.DSN("chinook"))
		if err != nil {
			chinook.err = err.Error()
			return
		}
		defer conn.Close(ctx)
		for _, q := range []string{
			"CREATE ROLE " + upstreamRole + " LOGIN PASSWORD '" + chinook.password + "'",
			"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO " + upstreamRole,
			"CREATE VIEW customer_contact AS SELECT customer_id, first_name, email, phone FROM customer",
			"GRANT SELECT ON customer_contact TO " + upstreamRole,
			"CREATE FUNCTION email_of(id int) RETURNS text LANGUAGE sql AS 'SELECT email FROM customer WHERE customer_id = id'",
			"CREATE FUNCTION email_gt(a int, b int) RETURNS text LANGUAGE sql AS 'SELECT email FROM customer WHERE customer_id = a'",
			"CREATE OPERATOR ### (LEFTARG = int, RIGHTARG = int, FUNCTION = email_gt)",
			"CREATE TABLE contact_log (id int, email text) PARTITION BY RANGE (id)",
			"CREATE TABLE contact_log_low PARTITION OF contact_log FOR VALUES FROM (0) TO (1000)",
			"INSERT INTO contact_log SELECT customer_id, email FROM customer",
			"CREATE TABLE signup (id int, email text, email_lower text GENERATED ALWAYS AS (lower(email)) STORED)",
			"INSERT INTO signup (id, email) SELECT customer_id, email FROM customer",
			"GRANT SELECT ON signup TO " + upstreamRole,
			"CREATE TABLE contact_note (id int, email text)",
			"CREATE TABLE contact_note_old (note text) INHERITS (contact_note)",
			"INSERT INTO contact_note_old (id, email) SELECT customer_id, email FROM customer",
			"GRANT SELECT ON contact_log, contact_log_low, contact_note, contact_note_old TO " + upstreamRole,
		} {
			if _, err := conn.Exec(ctx, q); err != nil {
				chinook.err = q + ": " + err.Error()
				return
			}
		}
	})
	if chinook.err != "" {
		t.Fatal(chinook.err)
	}
	return chinook.pg, chinook.password
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type fixture struct {
	pg       *pgtest.Server
	addr     string
	password string // upstream
	logs     *syncBuffer
	srv      *pgproxy.Server
	logins   *pgproxy.MemoryLogins
	db       string
	enf      *authz.Enforcer
}

// startProxy starts a proxy in front of the Chinook database; extra is
// appended to its YAML configuration.
func startProxy(t *testing.T, extra string) *fixture {
	t.Helper()
	return startProxyFor(t, "chinook", extra)
}

// startProxyFor starts a proxy in front of database db of the Chinook
// cluster.
func startProxyFor(t testing.TB, db, extra string) *fixture {
	t.Helper()
	return startProxyWith(t, db, "", extra)
}

// startProxyWith starts a proxy with upstreamExtra added to its upstream
// section, as lines indented by two spaces.
func startProxyWith(t testing.TB, db, upstreamExtra, extra string) *fixture {
	t.Helper()
	pg, password := chinookServer(t)
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("model.conf", authz.DefaultModel)
	write("policy.csv", testPolicy)
	write("rules.yaml", testRules)
	write("upstream.pw", password+"\n")
	write("pgproxy.yaml", `listen: 127.0.0.1:0
environment: test
upstream:
  address: 127.0.0.1:`+strconv.Itoa(pg.Port())+`
  database: `+db+`
  user: `+upstreamRole+`
  password: {file: upstream.pw}
`+upstreamExtra+`policy: {model: model.conf, policy: policy.csv}
rules: rules.yaml
`+extra)

	cfg, err := pgproxy.LoadConfig(filepath.Join(dir, "pgproxy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	enf, err := authz.New(cfg.Policy.Model, cfg.Policy.Policy)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Load(cfg.Rules)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := transform.NewKeys(secret.New([]byte(strings.Repeat("m", 32))))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := rules.Compile(rs, nil, keys)
	if err != nil {
		t.Fatal(err)
	}
	pw, err := cfg.Upstream.Password.Resolve()
	if err != nil {
		t.Fatal(err)
	}

	logins := pgproxy.NewMemoryLogins()
	for user, l := range map[string][2]string{"tester": {testerID, testerPW}, "support": {supportID, supportPW}} {
		v, err := pgproxy.NewVerifier([]byte(l[1]), rand.Reader, pgproxy.DefaultSCRAMIterations)
		if err != nil {
			t.Fatal(err)
		}
		logins.Put(user, pgproxy.Login{SPIFFEID: l[0], Verifier: v, Expires: time.Now().Add(time.Hour)})
	}

	logs := &syncBuffer{}
	srv, err := pgproxy.New(pgproxy.Options{
		Config: cfg, Authz: enf, Logins: logins, Rules: plan, UpstreamPassword: pw,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	return &fixture{pg: pg, addr: ln.Addr().String(), password: password, logs: logs, srv: srv, logins: logins, db: db, enf: enf}
}

// proxyDSN returns a libpq URL for user through the proxy.
func (f *fixture) proxyDSN(user, password string) string {
	return "postgres://" + user + ":" + password + "@" + f.addr + "/" + f.db + "?sslmode=disable"
}

// connect opens a pgx connection through the proxy that closes when the
// test ends.
func (f *fixture) connect(t *testing.T, user, password string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.proxyDSN(user, password))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return conn
}

// psql runs one command through the proxy and returns its unaligned output.
// Extra arguments go before the command.
func (f *fixture) psql(t *testing.T, user, password, command string, extra ...string) (string, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(f.addr)
	args := append([]string{"-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port, "-U", user, "-d", "chinook"}, extra...)
	cmd := exec.Command(filepath.Join(f.pg.BinDir(), "psql"), append(args, "-c", command)...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+password, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// direct queries Chinook as the superuser and returns the first column.
func direct(t *testing.T, pg *pgtest.Server, query string) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN("chinook"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}
