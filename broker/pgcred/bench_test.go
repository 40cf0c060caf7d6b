package pgcred_test

import (
	"context"
	"fmt"
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
