package pgcred

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestQuoteLiteral(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "abc", "'abc'"},
		{"quote", "it's", "'it''s'"},
		{"backslash", `a\b`, ` E'a\\b'`},
		{"quote and backslash", `'\`, ` E'''\\'`},
		{"injection", "x'; DROP ROLE admin; --", "'x''; DROP ROLE admin; --'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := quoteLiteral(tt.in); got != tt.want {
				t.Errorf("quoteLiteral(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestNewUsernameLength(t *testing.T) {
	tests := []struct {
		name, role, prefix string
	}{
		{"short", "shop-readonly", "ward_shop_readonly_"},
		{"max length role", strings.Repeat("r", 63), "ward_" + strings.Repeat("r", 41) + "_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newUsername(bytes.NewReader(make([]byte, 64)), tt.role)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, tt.prefix) || len(got) > maxIdentifier {
				t.Errorf("newUsername(%q) = %q (%d bytes), want prefix %q and at most %d bytes", tt.role, got, len(got), tt.prefix, maxIdentifier)
			}
		})
	}
}

func TestScramVerifierFormat(t *testing.T) {
	got, err := scramVerifier(bytes.NewReader(make([]byte, 16)), []byte("pencil"))
	if err != nil {
		t.Fatal(err)
	}
	// Salt of 16 zero bytes; keys computed independently with Python's
	// hashlib.pbkdf2_hmac and hmac for the password "pencil".
	want := "SCRAM-SHA-256$4096:AAAAAAAAAAAAAAAAAAAAAA==$cYb24178IFPJfwkjIWWOe5UyMYsPha0jpvVheOzD7fM=:VwyhxkJCO8QGAizhocQO03bRswvgJ9KCi+BMFMz6uvY="
	if got != want {
		t.Errorf("scramVerifier(pencil) = %s, want %s", got, want)
	}
}

func TestRoleValidate(t *testing.T) {
	valid := Role{Name: "shop-ro", DSN: "postgres://admin@db/shop", Password: SecretRef{Env: "X"}, DefaultTTL: time.Hour, MaxTTL: 2 * time.Hour}
	tests := []struct {
		name   string
		modify func(*Role)
		want   string // substring of the error, "" for success
	}{
		{"valid", func(*Role) {}, ""},
		{"bad name", func(r *Role) { r.Name = "Shop RO" }, "role name"},
		{"missing dsn", func(r *Role) { r.DSN = "" }, "dsn is missing"},
		{"zero ttl", func(r *Role) { r.DefaultTTL = 0 }, "must be positive"},
		{"default above max", func(r *Role) { r.DefaultTTL = 3 * time.Hour }, "exceeds max_ttl"},
		{"unknown field", func(r *Role) { r.Creation = "CREATE ROLE {{.User}}" }, "User"},
		{"no username", func(r *Role) { r.Creation = "SELECT 1" }, "does not use {{.Username}}"},
		{"bad revocation", func(r *Role) { r.Revocation = "DROP OWNED BY {{.Password}}" }, "Password"},
		{"quoted username", func(r *Role) {
			r.Creation = `CREATE ROLE "{{.Username}}" LOGIN PASSWORD {{.Password}} VALID UNTIL {{.Expiration}}`
		}, "quotes {{.Username}}"},
		{"quoted password", func(r *Role) {
			r.Creation = `CREATE ROLE {{.Username}} LOGIN PASSWORD '{{.Password}}' VALID UNTIL {{.Expiration}}`
		}, "quotes {{.Password}}"},
		{"quoted expiration", func(r *Role) {
			r.Creation = `CREATE ROLE {{.Username}} LOGIN PASSWORD {{.Password}} VALID UNTIL '{{.Expiration}}'`
		}, "quotes {{.Expiration}}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := valid
			tt.modify(&r)
			_, err := r.validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("validate() = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestDSNHasPassword(t *testing.T) {
	tests := []struct {
		dsn  string
		want bool
	}{
		{"postgres://admin@db/shop", false},
		{"postgres://admin:pw@db/shop", true},
		{"postgresql://admin@db/shop?password=pw", true},
		{"host=db user=admin dbname=shop", false},
		{"host=db user=admin password=pw", true},
	}
	for _, tt := range tests {
		if got := dsnHasPassword(tt.dsn); got != tt.want {
			t.Errorf("dsnHasPassword(%q) = %v, want %v", tt.dsn, got, tt.want)
		}
	}
}

func TestSecretRefResolve(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), maxSecretFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGCRED_TEST_PW", "fromenv")

	tests := []struct {
		name    string
		ref     SecretRef
		want    string
		wantErr bool
	}{
		{"file trims newline", SecretRef{File: file}, "s3cret", false},
		{"env", SecretRef{Env: "PGCRED_TEST_PW"}, "fromenv", false},
		{"unset env", SecretRef{Env: "PGCRED_TEST_UNSET"}, "", true},
		{"both", SecretRef{Env: "PGCRED_TEST_PW", File: file}, "", true},
		{"neither", SecretRef{}, "", true},
		{"too large", SecretRef{File: big}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.ref.Resolve()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Resolve() error = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && !got.Equal([]byte(tt.want)) {
				t.Errorf("Resolve() = %q, want %q", got.Reveal(), tt.want)
			}
		})
	}
}

func TestLoginDSN(t *testing.T) {
	tests := []struct{ admin, want string }{
		{"postgres://admin@db:5432/shop?sslmode=verify-full", "postgres://ward_x@db:5432/shop?sslmode=verify-full"},
		{"host=db user=admin dbname=shop", "host=db dbname=shop user=ward_x"},
	}
	for _, tt := range tests {
		if got := loginDSN(tt.admin, "ward_x"); got != tt.want {
			t.Errorf("loginDSN(%q) = %q, want %q", tt.admin, got, tt.want)
		}
	}
}

// unquoteLiteral parses a literal as PostgreSQL does with
// standard_conforming_strings on, for the fuzz target.
func unquoteLiteral(t *testing.T, lit string) string {
	escape := false
	if rest, ok := strings.CutPrefix(lit, " E"); ok {
		lit, escape = rest, true
	}
	if len(lit) < 2 || lit[0] != '\'' || lit[len(lit)-1] != '\'' {
		t.Fatalf("literal %q is not quoted", lit)
	}
	body := lit[1 : len(lit)-1]
	var out strings.Builder
	for i := 0; i < len(body); i++ {
		switch {
		case body[i] == '\'':
			if i+1 >= len(body) || body[i+1] != '\'' {
				t.Fatalf("literal %q ends early at byte %d", lit, i)
			}
			i++
		case escape && body[i] == '\\':
			if i+1 >= len(body) || body[i+1] != '\\' {
				t.Fatalf("literal %q has a single backslash at byte %d", lit, i)
			}
			i++
		}
		out.WriteByte(body[i])
	}
	return out.String()
}

func FuzzQuoteLiteral(f *testing.F) {
	for _, seed := range []string{"", "abc", "it's", `a\b`, `'\`, "x'; DROP ROLE admin; --", "\x00'"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := strings.ReplaceAll(s, "\x00", "")
		if got := unquoteLiteral(t, quoteLiteral(s)); got != want {
			t.Errorf("unquote(quoteLiteral(%q)) = %q, want %q", s, got, want)
		}
	})
}
