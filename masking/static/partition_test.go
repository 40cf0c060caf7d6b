package static_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/static"
	"ward.dev/ward/test/pgtest"
)

// TestPartitionedTable checks that rules on a partitioned table mask the
// rows of its partitions, in a database copy, in validation and in a dump.
func TestPartitionedTable(t *testing.T) {
	srv := pgtest.Shared(t)
	src := srv.CreateDB(t, "parts_src")
	srv.Exec(t, "parts_src", `
		CREATE TABLE events (id int NOT NULL, email text NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);
		CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
		CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		INSERT INTO events VALUES (1, 'a@example.org', '2023-05-01'), (2, 'b@example.org', '2024-05-01');`)
	rs, err := rules.Parse("p.yaml", []byte("strict: true\ncolumns:\n  public.events.email: hash\n  public.events.id: keep\n  public.events.at: keep\n"))
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := connect(t, src)
	catalog, err := static.ReadCatalog(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if problems := rules.Validate(rs, catalog, testKeys(t), true); len(problems) > 0 {
		t.Errorf("Validate = %v, want no problems", problems)
	}

	dst := srv.CreateDB(t, "parts_dst")
	if _, err := static.CopyDatabase(ctx, rs, testKeys(t), static.DBOptions{Source: src, Target: dst, BinDir: srv.BinDir()}); err != nil {
		t.Fatalf("CopyDatabase: %v", err)
	}
	got := copyOut(t, connect(t, dst), "SELECT email FROM events ORDER BY id", "")
	if strings.Contains(got, "@example.org") || strings.Count(got, "\n") != 2 {
		t.Errorf("target events = %q, want two hashed e-mails", got)
	}

	dir := t.TempDir()
	dump := filepath.Join(dir, "parts.sql")
	if out, err := exec.Command(filepath.Join(srv.BinDir(), "pg_dump"), "--no-owner", "--dbname", src, "--file", dump).CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	masked := filepath.Join(dir, "masked.sql")
	if _, err := static.MaskFile(rs, testKeys(t), dump, masked, static.FileOptions{Format: static.FormatPGDump}); err != nil {
		t.Fatalf("MaskFile: %v", err)
	}
	data, _ := os.ReadFile(masked)
	if strings.Contains(string(data), "@example.org") {
		t.Errorf("masked dump still holds e-mails")
	}

	typo, _ := rules.Parse("t.yaml", []byte("columns:\n  public.evnts.email: hash\n"))
	if _, err := static.CopyDatabase(ctx, typo, testKeys(t), static.DBOptions{Source: src, Target: srv.CreateDB(t, "parts_typo"), BinDir: srv.BinDir()}); err == nil || !strings.Contains(err.Error(), "t.yaml:2: table public.evnts not found") {
		t.Errorf("CopyDatabase with a misspelt table: %v, want t.yaml:2: table public.evnts not found", err)
	}
}
