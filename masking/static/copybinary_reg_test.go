package static_test

import "testing"

// TestCopyKeepsRegclassNames copies a table whose kept columns have the
// OID alias types regclass, regtype and regproc, naming objects created in
// the source. The target gets its own objects with new OIDs, so each value
// must still name the object, as a COPY in text format does, and not carry
// the source's OID.
func TestCopyKeepsRegclassNames(t *testing.T) {
	src, dst := copyMasked(t, "reg", `
		CREATE TYPE mood AS ENUM ('calm', 'busy');
		CREATE FUNCTION answer() RETURNS int LANGUAGE sql AS 'SELECT 42';
		CREATE TABLE refs (id int PRIMARY KEY, email text, rel regclass, typ regtype, fn regproc);
		INSERT INTO refs VALUES (1, 'a@example.org', 'refs', 'mood', 'answer');`,
		"columns:\n  public.refs.email: email\n")
	sameResult(t, src, dst, "SELECT id, rel::text, typ::text, fn::text FROM refs ORDER BY id")
}

// TestCopyKeepsAclitemColumn copies a table with a kept aclitem column
// next to a masked text column. aclitem has no binary send or receive
// function, so the table must go in COPY's text format and arrive intact.
func TestCopyKeepsAclitemColumn(t *testing.T) {
	src, dst := copyMasked(t, "acl", `
		CREATE TABLE perms (id int PRIMARY KEY, email text, acl aclitem[]);
		INSERT INTO perms VALUES (1, 'a@example.org', '{=r/postgres}');`,
		"columns:\n  public.perms.email: email\n")
	sameResult(t, src, dst, "SELECT id, acl FROM perms ORDER BY id")
}
