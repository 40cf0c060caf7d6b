package pgcred_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"ward.dev/ward/broker/pgcred"
	"ward.dev/ward/test/pgtest"
)

// BenchmarkCreateRevoke compares a full Issue and Revoke through the
// Issuer with the same CREATE ROLE, GRANT, DROP OWNED and DROP ROLE sent
// directly over one connection. Iterations alternate between the two so
// both see the same machine load. Metrics: logins/s of each and their
// ratio (ward/direct).
func BenchmarkCreateRevoke(b *testing.B) {
	ctx := context.Background()
	srv := pgtest.Shared(b)
	db := newShop(b, srv)
	iss := newIssuer(b, pgcred.Options{}, adminRole(b, srv, db, "bench", readonlyCreation))

	direct, err := pgx.Connect(ctx, srv.DSN(db))
	if err != nil {
		b.Fatal(err)
	}
	defer direct.Close(ctx)

	var wardIssue, wardRevoke, directCreate, directDrop time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		_, meta, err := iss.Issue(ctx, "bench", "spiffe://ward.test/bench", time.Time{})
		if err != nil {
			b.Fatalf("Issue = %v", err)
		}
		wardIssue += time.Since(start)
		start = time.Now()
		if err := iss.Revoke(ctx, meta); err != nil {
			b.Fatalf("Revoke = %v", err)
		}
		wardRevoke += time.Since(start)

		start = time.Now()
		name := pgx.Identifier{fmt.Sprintf("direct_%d", i)}.Sanitize()
		expiry := time.Now().Add(time.Hour).UTC().Format("2006-01-02 15:04:05Z07:00")
		create := fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD 'q3Zr8xVb1mT5nL0pK7wY2sD4fG6hJ9aC-eRtUiOp_zX' VALID UNTIL '%s'; GRANT SELECT ON products TO %s", name, expiry, name)
		if _, err := direct.Exec(ctx, create); err != nil {
			b.Fatalf("direct create = %v", err)
		}
		directCreate += time.Since(start)
		start = time.Now()
		if _, err := direct.Exec(ctx, "DROP OWNED BY "+name+"; DROP ROLE "+name); err != nil {
			b.Fatalf("direct drop = %v", err)
		}
		directDrop += time.Since(start)
	}

	n := float64(b.N)
	wardRate := n / (wardIssue + wardRevoke).Seconds()
	directRate := n / (directCreate + directDrop).Seconds()
	b.ReportMetric(wardRate, "ward-logins/s")
	b.ReportMetric(directRate, "direct-logins/s")
	b.ReportMetric(wardRate/directRate, "ratio")
	perOp := func(d time.Duration) float64 { return float64(d.Microseconds()) / n }
	b.ReportMetric(perOp(wardIssue), "ward-issue-µs")
	b.ReportMetric(perOp(wardRevoke), "ward-revoke-µs")
	b.ReportMetric(perOp(directCreate), "direct-create-µs")
	b.ReportMetric(perOp(directDrop), "direct-drop-µs")
}

// BenchmarkRevokeLogins measures a mass revocation, such as the sweep after
// a restart, with one revocation at a time and with four. The logins are
// created directly, without passwords, because only revocation is timed.
func BenchmarkRevokeLogins(b *testing.B) {
	ctx := context.Background()
	srv := pgtest.Shared(b)
	db := newShop(b, srv)

	for _, concurrency := range []int{1, 4} {
		b.Run(fmt.Sprintf("concurrency=%d", concurrency), func(b *testing.B) {
			name := fmt.Sprintf("mass%d", concurrency)
			iss := newIssuer(b, pgcred.Options{MaxConns: int32(concurrency), RevokeConcurrency: concurrency}, adminRole(b, srv, db, name, readonlyCreation))

			var create strings.Builder
			for i := range b.N {
				ident := pgx.Identifier{fmt.Sprintf("ward_%s_%s", name, letterSuffix(i))}.Sanitize()
				fmt.Fprintf(&create, "CREATE ROLE %s LOGIN VALID UNTIL 'infinity'; GRANT SELECT ON products TO %s;\n", ident, ident)
			}
			srv.Exec(b, db, create.String())

			b.ResetTimer()
			n, err := iss.RevokeLogins(ctx, name)
			b.StopTimer()
			if err != nil || n != b.N {
				b.Fatalf("RevokeLogins = %d, %v; want %d, nil", n, err, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
		})
	}
}

// letterSuffix returns i in base 26 as 16 letters, shaped like the random
// suffix of a generated username.
func letterSuffix(i int) string {
	b := []byte("aaaaaaaaaaaaaaaa")
	for pos := len(b) - 1; i > 0 && pos >= 0; pos-- {
		b[pos] = byte('a' + i%26)
		i /= 26
	}
	return string(b)
}
