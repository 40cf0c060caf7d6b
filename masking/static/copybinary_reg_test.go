package static_test

import (
	"context"
	"testing"
	"time"

	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/static"
	"ward.dev/ward/test/pgtest"
)

// TestCopyKeepsRegclassNames copies a table whose kept columns have the
// OID alias types regclass, regtype and regproc, naming objects created in
// the source. The target gets its own objects with new OIDs, so each value
// must still name the object, as a COPY in text format does, and not carry
// the source's OID.
func TestCopyKeepsRegclassNames(t *testing.T) {
	srv := pgtest.Shared(t)
	src := srv.CreateDB(t, "reg_src")
	srv.Exec(t, "reg_src", `
		CREATE TYPE mood AS ENUM ('calm', 'busy');
		CREATE FUNCTION answer() RETURNS int LANGUAGE sql AS 'SELECT 42';
		CREATE TABLE refs (id int PRIMARY KEY, email text, rel regclass, typ regtype, fn regproc);
		INSERT INTO refs VALUES (1, 'a@example.org', 'refs', 'mood', 'answer');`)

	rs, err := rules.Parse("r.yaml", []byte("columns:\n  public.refs.email: email\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dst := srv.CreateDB(t, "reg_dst")
	if _, err := static.CopyDatabase(ctx, rs, testKeys(t), static.DBOptions{Source: src, Target: dst, BinDir: srv.BinDir()}); err != nil {
		t.Fatalf("CopyDatabase: %v", err)
	}

	const q = "SELECT id, rel::text, typ::text, fn::text FROM refs ORDER BY id"
	got, want := copyOut(t, connect(t, dst), q, ""), copyOut(t, connect(t, src), q, "")
	if got != want {
		t.Errorf("target %q = %q, want the source's %q", q, got, want)
	}
}

// TestCopyKeepsAclitemColumn copies a table with a kept aclitem column
// next to a masked text column. aclitem has no binary send or receive
// function, so the table must go in COPY's text format and arrive intact.
func TestCopyKeepsAclitemColumn(t *testing.T) {
	srv := pgtest.Shared(t)
	src := srv.CreateDB(t, "acl_src")
	srv.Exec(t, "acl_src", `
		CREATE TABLE perms (id int PRIMARY KEY, email text, acl aclitem[]);
		INSERT INTO perms VALUES (1, 'a@example.org', '{=r/postgres}');`)

	rs, err := rules.Parse("a.yaml", []byte("columns:\n  public.perms.email: email\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dst := srv.CreateDB(t, "acl_dst")
	if _, err := static.CopyDatabase(ctx, rs, testKeys(t), static.DBOptions{Source: src, Target: dst, BinDir: srv.BinDir()}); err != nil {
		t.Fatalf("CopyDatabase: %v", err)
	}

	const q = "SELECT id, acl FROM perms ORDER BY id"
	got, want := copyOut(t, connect(t, dst), q, ""), copyOut(t, connect(t, src), q, "")
	if got != want {
		t.Errorf("target %q = %q, want the source's %q", q, got, want)
	}
}
