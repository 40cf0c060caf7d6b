package static_test

import (
	"context"
	"testing"
	"time"

	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/static"
	"ward.dev/ward/test/pgtest"
)

// TestCopyTextIgnoresSourceSettings copies a table in COPY's text format,
// which an integer entity column of its masked column requires, from a
// source database whose DateStyle, IntervalStyle and extra_float_digits
// differ from the target's defaults. Kept dates, intervals and floats must
// arrive unchanged, whatever output style the source database sets.
func TestCopyTextIgnoresSourceSettings(t *testing.T) {
	srv := pgtest.Shared(t)
	src := srv.CreateDB(t, "style_src")
	srv.Exec(t, "style_src", `
		ALTER DATABASE style_src SET DateStyle = 'SQL, DMY';
		ALTER DATABASE style_src SET IntervalStyle = 'sql_standard';
		ALTER DATABASE style_src SET extra_float_digits = -15;
		CREATE TABLE visits (id int PRIMARY KEY, email text, day date, span interval, ratio float8);
		INSERT INTO visits VALUES (1, 'a@example.org', '2024-03-05', '-1 day -2 hours', 1.0 / 3);`)

	rs, err := rules.Parse("s.yaml", []byte("columns:\n  public.visits.email: {transformer: hash, entity: id}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dst := srv.CreateDB(t, "style_dst")
	if _, err := static.CopyDatabase(ctx, rs, testKeys(t), static.DBOptions{Source: src, Target: dst, BinDir: srv.BinDir()}); err != nil {
		t.Fatalf("CopyDatabase: %v", err)
	}

	// The query spells each value out in a form that no setting changes.
	const q = "SELECT id, to_char(day, 'YYYY-MM-DD'), extract(epoch FROM span), float8send(ratio) FROM visits ORDER BY id"
	got, want := copyOut(t, connect(t, dst), q, ""), copyOut(t, connect(t, src), q, "")
	if got != want {
		t.Errorf("target %q = %q, want the source's %q", q, got, want)
	}
}
