package pgproxy_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"ward.dev/ward/masking/pgproxy"
)

func TestCursorFetchMasked(t *testing.T) {
	f := startProxy(t, "")
	emails := direct(t, f.pg, "SELECT email FROM customer")
	out, err := f.psql(t, "tester", testerPW, `BEGIN;
DECLARE c CURSOR FOR SELECT lower(email), customer_id FROM customer ORDER BY customer_id;
FETCH 5 FROM c;
FETCH ALL FROM c;
COMMIT;`)
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	// lower(email) is computed, and the e-mail transformer keeps the
	// domain part of its input, so the proxy redacts it.
	if n := strings.Count(out, "REDACTED"); n != len(emails) {
		t.Errorf("cursor returned %d redacted values, want %d", n, len(emails))
	}
	assertNoEmail(t, "cursor", out, emails)

	// psql's FETCH_COUNT reads results through a cursor of its own.
	out, err = f.psql(t, "tester", testerPW, "SELECT email FROM customer", "-v", "FETCH_COUNT=7")
	if err != nil {
		t.Fatalf("psql FETCH_COUNT: %v\n%s", err, out)
	}
	assertNoEmail(t, "FETCH_COUNT", out, emails)
}

func TestStrictMode(t *testing.T) {
	f := startProxy(t, "strict: true\n")
	rejected := []string{
		"SELECT customer_id FROM customer WHERE email LIKE 'a%'",
		"SELECT customer_id FROM customer ORDER BY phone",
		"SELECT count(*) FROM customer GROUP BY email",
		"SELECT DISTINCT ON (email) customer_id FROM customer",
		"SELECT i.total FROM invoice i JOIN customer c ON c.customer_id = i.customer_id AND c.email > 'm'",
		"SELECT customer_id FROM customer LIMIT (SELECT count(*) FROM customer WHERE email = 'luisg@embraer.com.br')",
		"SELECT customer_id FROM customer OFFSET (SELECT count(*) FROM customer WHERE email LIKE 'l%')",
		"SELECT row_number() OVER (ORDER BY email), customer_id FROM customer",
		"SELECT count(*) OVER (PARTITION BY email) FROM customer",
		"SELECT customer_id FROM customer WINDOW w AS (ORDER BY email)",
	}
	for _, q := range rejected {
		out, err := f.psql(t, "tester", testerPW, q)
		if err == nil || !strings.Contains(out, "strict mode") {
			t.Errorf("strict: psql %q = %v %q, want a strict-mode rejection", q, err, out)
		}
	}

	allowed := map[string]string{
		"tester":  "SELECT email FROM customer WHERE customer_id < 3 ORDER BY country",
		"support": "SELECT customer_id FROM customer WHERE email LIKE 'a%'",
	}
	for user, q := range allowed {
		pw := testerPW
		if user == "support" {
			pw = supportPW
		}
		if out, err := f.psql(t, user, pw, q); err != nil {
			t.Errorf("strict: %s psql %q: %v\n%s", user, q, err, out)
		}
	}
}

func TestCancelForwarded(t *testing.T) {
	f := startProxy(t, "")
	conn, err := pgx.Connect(context.Background(), f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = conn.Exec(ctx, "SELECT pg_sleep(20)")
	if err == nil {
		t.Fatal("pg_sleep(20) finished, want it canceled")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancel took %v, want well under the sleep", d)
	}
}

func TestExpiredLoginRejected(t *testing.T) {
	f := startProxy(t, "")
	v, err := pgproxy.NewVerifier([]byte("old-pw"), rand.Reader, pgproxy.DefaultSCRAMIterations)
	if err != nil {
		t.Fatal(err)
	}
	f.logins.Put("old", pgproxy.Login{SPIFFEID: testerID, Verifier: v, Expires: time.Now().Add(-time.Minute)})
	ctx := context.Background()
	_, err = pgconn.Connect(ctx, f.proxyDSN("old", "old-pw"))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Errorf("expired login: err = %v, want SQLSTATE 28P01", err)
	}
}

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate with SPIFFE ID id, and returns their file paths.
func testPKI(t *testing.T, id string) (caFile, certFile, keyFile, clientCert, clientKey string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)

	issue := func(name string, tmpl *x509.Certificate) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalECPrivateKey(key)
		c, k := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		writePEM(t, c, "CERTIFICATE", der)
		writePEM(t, k, "EC PRIVATE KEY", keyDER)
		return c, k
	}
	caFile = filepath.Join(dir, "ca.crt")
	writePEM(t, caFile, "CERTIFICATE", caDER)
	certFile, keyFile = issue("server", &x509.Certificate{SerialNumber: big.NewInt(2),
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	u, _ := url.Parse(id)
	clientCert, clientKey = issue("client", &x509.Certificate{SerialNumber: big.NewInt(3),
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{u}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return caFile, certFile, keyFile, clientCert, clientKey
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTLSClientCertificate(t *testing.T) {
	caFile, certFile, keyFile, clientCert, clientKey := testPKI(t, supportID)
	f := startProxy(t, "tls: {cert_file: "+certFile+", key_file: "+keyFile+", client_ca_file: "+caFile+", require: true}\n")
	emails := direct(t, f.pg, "SELECT email FROM customer ORDER BY customer_id")
	ctx := context.Background()

	// Without TLS the proxy rejects the client.
	if _, err := pgconn.Connect(ctx, f.proxyDSN("tester", testerPW)); err == nil {
		t.Error("plain connection accepted although tls.require is set")
	}

	// A password login over TLS 1.3.
	cfg, err := pgx.ParseConfig("postgres://tester:" + testerPW + "@" + f.addr + "/chinook?sslmode=verify-full&sslrootcert=" + caFile)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("TLS password login: %v", err)
	}
	if tc, ok := conn.PgConn().Conn().(*tls.Conn); !ok || tc.ConnectionState().Version != tls.VersionTLS13 {
		t.Errorf("connection is not TLS 1.3")
	}
	conn.Close(ctx)

	// A ward client certificate names the caller; no password is asked.
	cfg, err = pgx.ParseConfig("postgres://anyone@" + f.addr + "/chinook?sslmode=verify-full&sslrootcert=" + caFile +
		"&sslcert=" + clientCert + "&sslkey=" + clientKey)
	if err != nil {
		t.Fatal(err)
	}
	conn, err = pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("client certificate login: %v", err)
	}
	defer conn.Close(ctx)
	var email string
	if err := conn.QueryRow(ctx, "SELECT email FROM customer ORDER BY customer_id LIMIT 1").Scan(&email); err != nil {
		t.Fatal(err)
	}
	if email != emails[0] {
		t.Errorf("support by certificate sees %q, want the original %q", email, emails[0])
	}
}

func TestQuarantinedCallerRejected(t *testing.T) {
	f := startProxy(t, "")
	ctx := context.Background()
	emails := direct(t, f.pg, "SELECT email FROM customer ORDER BY customer_id")
	conn, err := pgx.Connect(ctx, f.proxyDSN("support", supportPW))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	f.enf.Quarantine(supportID, "test")
	var email string
	if err := conn.QueryRow(ctx, "SELECT email FROM customer ORDER BY customer_id LIMIT 1").Scan(&email); err != nil {
		t.Fatal(err)
	}
	if email == emails[0] {
		t.Errorf("quarantined support session still sees e-mail %q in clear", email)
	}
	_, err = pgconn.Connect(ctx, f.proxyDSN("support", supportPW))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28000" {
		t.Errorf("quarantined login: err = %v, want SQLSTATE 28000", err)
	}

	f.enf.Release(supportID)
	if err := conn.QueryRow(ctx, "SELECT email FROM customer ORDER BY customer_id LIMIT 1").Scan(&email); err != nil || email != emails[0] {
		t.Errorf("released support sees %q, %v; want %q", email, err, emails[0])
	}
}

func TestNotifyPayloadRedacted(t *testing.T) {
	f := startProxy(t, "writes: passthrough\n")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	listener, err := pgx.Connect(ctx, f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, "LISTEN ward_test"); err != nil {
		t.Fatal(err)
	}
	f.pg.Exec(t, "chinook", "SELECT pg_notify('ward_test', email) FROM customer WHERE customer_id = 1")

	n, err := listener.WaitForNotification(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Channel != "ward_test" || n.Payload != "REDACTED" {
		t.Errorf("notification = %q %q, want channel ward_test and payload REDACTED", n.Channel, n.Payload)
	}
}

func TestConnectionLimit(t *testing.T) {
	f := startProxy(t, "limits: {max_connections: 1}\n")
	ctx := context.Background()
	first, err := pgconn.Connect(ctx, f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatal(err)
	}
	_, err = pgconn.Connect(ctx, f.proxyDSN("tester", testerPW))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "53300" {
		t.Errorf("second connection: err = %v, want SQLSTATE 53300", err)
	}
	first.Close(ctx)

	// The slot is free again once the first session has ended.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := pgconn.Connect(ctx, f.proxyDSN("tester", testerPW))
		if err == nil {
			c.Close(ctx)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection after the first closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPipelineErrorAndRejection(t *testing.T) {
	f := startProxy(t, "")
	ctx := context.Background()
	conn, err := pgconn.Connect(ctx, f.proxyDSN("tester", testerPW))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	// An upstream error and a proxy rejection in one batch give one error.
	p := conn.StartPipeline(ctx)
	p.SendQueryParams("SELECT 1/0", nil, nil, nil, nil)
	p.SendQueryParams("DELETE FROM genre", nil, nil, nil, nil)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	errs := 0
	for {
		res, err := p.GetResults()
		if err != nil {
			t.Logf("GetResults: %v", err)
			errs++
			continue
		}
		if res == nil {
			break
		}
		if rr, ok := res.(*pgconn.ResultReader); ok {
			if err := rr.Read().Err; err != nil {
				t.Logf("result: %v", err)
				errs++
			}
		}
		if _, ok := res.(*pgconn.PipelineSync); ok {
			break
		}
	}
	if err := p.Close(); err != nil {
		t.Logf("pipeline close: %v", err)
	}
	if errs != 1 {
		t.Errorf("pipeline returned %d errors, want 1", errs)
	}
	res := conn.ExecParams(ctx, "SELECT count(*) FROM genre", nil, nil, nil, nil).Read()
	if res.Err != nil || len(res.Rows) != 1 {
		t.Fatalf("query after the pipeline: %v", res.Err)
	}
}

// TestCatalogStatsRefusedInEveryMode checks that views which sample column
// values or show other sessions' statements are refused without strict mode.
func TestCatalogStatsRefusedInEveryMode(t *testing.T) {
	f := startProxy(t, "")
	for _, q := range []string{
		"SELECT most_common_vals FROM pg_stats",
		"SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'customer'",
		"SELECT query FROM pg_stat_activity",
	} {
		out, err := f.psql(t, "tester", testerPW, q)
		if err == nil || !strings.Contains(out, "exposes column values") {
			t.Errorf("psql %q = %v %q, want a rejection", q, err, out)
		}
	}
}

// TestDataAfterSSLRequestRejected sends a query in the clear right behind
// SSLRequest, as a machine in the path could inject it. The proxy must
// reject the connection instead of starting TLS with the query pending.
func TestDataAfterSSLRequestRejected(t *testing.T) {
	caFile, certFile, keyFile, _, _ := testPKI(t, supportID)
	f := startProxy(t, "tls: {cert_file: "+certFile+", key_file: "+keyFile+", client_ca_file: "+caFile+"}\n")
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	sslRequest := []byte{0, 0, 0, 8, 4, 210, 22, 47}
	injected, _ := (&pgproto3.Query{String: "SELECT 1"}).Encode(nil)
	if _, err := c.Write(append(sslRequest, injected...)); err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(c)
	if len(answer) == 0 || answer[0] != 'E' || !bytes.Contains(answer, []byte("08P01")) {
		t.Errorf("answer to SSLRequest followed by a query = %q, want an 08P01 ErrorResponse", answer)
	}

	// A client that waits for the response still gets TLS.
	conn, err := pgx.Connect(context.Background(), "postgres://tester:"+testerPW+"@"+f.addr+"/chinook?sslmode=verify-full&sslrootcert="+caFile)
	if err != nil {
		t.Fatalf("TLS login after the refused connection: %v", err)
	}
	conn.Close(context.Background())
}
