package pgproxy_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// benchDB is a database with pgbench's tables and a million-row person
// table, made once per test binary.
var benchDB struct {
	once sync.Once
	err  error
}

func prepareBenchDB(b *testing.B) {
	b.Helper()
	pg, _ := chinookServer(b)
	benchDB.once.Do(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
		if err != nil {
			benchDB.err = err
			return
		}
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS bench")
		if _, err := conn.Exec(ctx, "CREATE DATABASE bench"); err != nil {
			benchDB.err = err
		}
		conn.Close(ctx)
		if benchDB.err != nil {
			return
		}

		cmd := exec.Command(filepath.Join(pg.BinDir(), "pgbench"), "-i", "-q", "-s", "10",
			"-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port()), "-U", "postgres", "bench")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+pg.Password())
		if out, err := cmd.CombinedOutput(); err != nil {
			benchDB.err = fmt.Errorf("pgbench -i: %v: %s", err, out)
			return
		}

		conn, err = pgx.Connect(ctx, pg.DSN("bench"))
		if err != nil {
			benchDB.err = err
			return
		}
		defer conn.Close(ctx)
		for _, q := range []string{
			`CREATE TABLE person AS SELECT g AS id, 'person' || g || '@example.com' AS email,
			   '+1 555 ' || lpad(g::text, 7, '0') AS phone, 'Name ' || g AS name, g % 100 AS score
			 FROM generate_series(1, 1000000) g`,
			"GRANT SELECT ON ALL TABLES IN SCHEMA public TO " + upstreamRole,
			"VACUUM ANALYZE person",
		} {
			if _, err := conn.Exec(ctx, q); err != nil {
				benchDB.err = fmt.Errorf("%s: %w", q, err)
				return
			}
		}
	})
	if benchDB.err != nil {
		b.Fatal(benchDB.err)
	}
}

var tpsRe = regexp.MustCompile(`tps = ([0-9.]+)`)

// runPgbench runs pgbench -S -c 16 -j 2 -T 20 against host:port and
// returns transactions per second.
func runPgbench(b *testing.B, binDir, host, port, user, password string) float64 {
	b.Helper()
	cmd := exec.Command(filepath.Join(binDir, "pgbench"), "-n", "-S", "-c", "16", "-j", "2", "-T", "20",
		"-h", host, "-p", port, "-U", user, "bench")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+password, "PGSSLMODE=disable")
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("pgbench: %v\n%s", err, out)
	}
	m := tpsRe.FindSubmatch(out)
	if m == nil {
		b.Fatalf("pgbench printed no tps:\n%s", out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	return tps
}

// BenchmarkPgbenchSelectOnly compares pgbench's select-only script run
// directly against PostgreSQL and through the proxy (and through PgBouncer
// when it is installed). Each sub-benchmark runs pgbench once for 20 s and
// reports its transactions per second; b.N is not used.
func BenchmarkPgbenchSelectOnly(b *testing.B) {
	prepareBenchDB(b)
	pg, password := chinookServer(b)
	f := startProxyFor(b, "bench", "")

	b.Run("direct", func(b *testing.B) {
		tps := runPgbench(b, pg.BinDir(), "127.0.0.1", strconv.Itoa(pg.Port()), upstreamRole, password)
		b.ReportMetric(tps, "tps")
	})
	b.Run("ward", func(b *testing.B) {
		host, port, _ := net.SplitHostPort(f.addr)
		tps := runPgbench(b, pg.BinDir(), host, port, "tester", testerPW)
		b.ReportMetric(tps, "tps")
	})
	b.Run("pgbouncer", func(b *testing.B) {
		addr := startPgbouncer(b, pg.Port(), password)
		host, port, _ := net.SplitHostPort(addr)
		tps := runPgbench(b, pg.BinDir(), host, port, upstreamRole, password)
		b.ReportMetric(tps, "tps")
	})
}

// BenchmarkReadMaskedRows reads the million-row person table, whose email,
// phone and name columns the rules mask, directly and through the proxy,
// and reports rows per second.
func BenchmarkReadMaskedRows(b *testing.B) {
	prepareBenchDB(b)
	pg, password := chinookServer(b)
	f := startProxyFor(b, "bench", "")
	directDSN := fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/bench?sslmode=disable", upstreamRole, password, pg.Port())

	const masked = "SELECT id, email, phone, name, score FROM person"
	const kept = "SELECT id, score, id + score FROM person"
	for _, c := range []struct{ name, dsn, query string }{
		{"direct", directDSN, masked},
		{"ward", f.proxyDSN("tester", testerPW), masked},
		// The same rows without masked columns separate the relay's cost
		// from the transformers'.
		{"direct-kept-columns", directDSN, kept},
		{"ward-kept-columns", f.proxyDSN("tester", testerPW), kept},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, c.dsn)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close(ctx)
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				rows, err := conn.Query(ctx, c.query)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for rows.Next() {
					n++
				}
				if err := rows.Err(); err != nil {
					b.Fatal(err)
				}
				if n != 1000000 {
					b.Fatalf("read %d rows, want 1000000", n)
				}
			}
			b.ReportMetric(float64(b.N)*1e6/time.Since(start).Seconds(), "rows/s")
		})
	}
}
