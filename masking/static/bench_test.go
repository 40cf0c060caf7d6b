package static_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/static"
	"ward.dev/ward/test/pgtest"
)

// benchRows is the size of the generated table; the benchmark runs only
// under -bench, never in go test runs.
const benchRows = 1_000_000

var benchDB atomic.Int64

// BenchmarkCopyDatabase copies a generated table of one million rows with
// three masked columns (fake name, email, fpe phone) with CopyDatabase and,
// as the baseline in the same run, with pg_dump piped into psql.
func BenchmarkCopyDatabase(b *testing.B) {
	srv := pgtest.Shared(b)
	src := srv.CreateDB(b, fmt.Sprintf("bench_src_%d", time.Now().UnixNano()))
	srv.Exec(b, dbName(src), fmt.Sprintf(`
		CREATE TABLE person (id bigserial PRIMARY KEY, name text NOT NULL, email text NOT NULL, phone text, joined date NOT NULL);
		INSERT INTO person (name, email, phone, joined)
		SELECT 'Person ' || g, 'person' || g || '@example.org', '+1 (555) ' || lpad((g %% 10000000)::text, 7, '0'), DATE '2000-01-01' + g %% 8000
		FROM generate_series(1, %d) AS g;
		ANALYZE person;`, benchRows))
	rs, err := rules.Parse("bench.yaml", []byte(`columns:
  public.person.name: {transformer: fake, kind: name}
  public.person.email: email
  public.person.phone: {transformer: fpe, keep_first: 1}
`))
	if err != nil {
		b.Fatal(err)
	}
	keys := testKeys(b)

	b.Run("ward-mask-db", func(b *testing.B) {
		for b.Loop() {
			dst := srv.CreateDB(b, fmt.Sprintf("bench_dst_%d", benchDB.Add(1)))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			_, err := static.CopyDatabase(ctx, rs, keys, static.DBOptions{Source: src, Target: dst, BinDir: srv.BinDir(), Jobs: 2})
			cancel()
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})

	b.Run("pg_dump-psql-baseline", func(b *testing.B) {
		for b.Loop() {
			dst := srv.CreateDB(b, fmt.Sprintf("bench_dst_%d", benchDB.Add(1)))
			dump := exec.Command(filepath.Join(srv.BinDir(), "pg_dump"), "--no-owner", "--dbname", src)
			load := exec.Command(filepath.Join(srv.BinDir(), "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--dbname", dst)
			pipe, err := dump.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			load.Stdin = pipe
			if err := dump.Start(); err != nil {
				b.Fatal(err)
			}
			if out, err := load.CombinedOutput(); err != nil {
				b.Fatalf("psql: %v\n%s", err, out)
			}
			if err := dump.Wait(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}

// dbName returns the database name at the end of a pgtest DSN.
func dbName(dsn string) string {
	name := filepath.Base(dsn)
	if i := len(name) - len("?sslmode=disable"); i > 0 && name[i:] == "?sslmode=disable" {
		return name[:i]
	}
	return name
}
