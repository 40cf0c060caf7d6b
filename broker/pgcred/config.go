package pgcred

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"ward.dev/ward/crypto/secret"
)

// Role is one configured kind of dynamic login, as written in ward's
// configuration file.
//
//   - name: shop-readonly
//     dsn: postgres://ward_admin@db.internal:5432/shop?sslmode=verify-full
//     password: {env: WARD_SHOP_ADMIN_PASSWORD}
//     creation: |
//     CREATE ROLE {{.Username}} LOGIN PASSWORD {{.Password}} VALID UNTIL {{.Expiration}};
//     GRANT SELECT ON products TO {{.Username}};
//     default_ttl: 1h
//     max_ttl: 24h
type Role struct {
	// Name identifies the role in policy objects ("db/<name>") and in the
	// generated usernames. It is 1 to 63 characters of [a-z0-9_-].
	Name string `yaml:"name"`

	// DSN is the admin connection string, without a password.
	DSN string `yaml:"dsn"`

	// Password is the reference to the admin password.
	Password SecretRef `yaml:"password"`

	// Creation is a text/template of SQL statements run in one transaction.
	// {{.Username}} expands to a quoted identifier, {{.Password}} to a
	// quoted literal holding the SCRAM-SHA-256 verifier of the password
	// (so the plaintext never reaches the server or its logs), and
	// {{.Expiration}} to a quoted timestamptz literal. Empty means a bare
	// LOGIN role with that password and VALID UNTIL.
	Creation string `yaml:"creation"`

	// Revocation is an optional template, with {{.Username}} only, run in
	// place of REASSIGN OWNED and DROP OWNED in the admin DSN's database.
	// ward always terminates the login's sessions first and drops the role
	// afterwards.
	Revocation string `yaml:"revocation"`

	// DefaultTTL applies when Issue gets a zero expiry. MaxTTL bounds every
	// expiry, counted from issuance, renewals included.
	DefaultTTL time.Duration `yaml:"default_ttl"`
	MaxTTL     time.Duration `yaml:"max_ttl"`
}

// SecretRef names where a secret is read from: an environment variable or
// a file. Exactly one must be set. The secret never comes from a command
// line or the configuration file itself.
type SecretRef struct {
	Env  string `yaml:"env"`
	File string `yaml:"file"`
}

// maxSecretFile bounds how much of a password file is read.
const maxSecretFile = 4096

// Resolve reads the secret. A file's trailing newline is dropped.
func (r SecretRef) Resolve() (secret.Bytes, error) {
	switch {
	case r.Env != "" && r.File != "":
		return secret.Bytes{}, errors.New("secret reference sets both env and file, want exactly one")

	case r.Env != "":
		v, ok := os.LookupEnv(r.Env)
		if !ok || v == "" {
			return secret.Bytes{}, fmt.Errorf("environment variable %s is unset or empty", r.Env)
		}
		return secret.New([]byte(v)), nil

	case r.File != "":
		f, err := os.Open(r.File)
		if err != nil {
			return secret.Bytes{}, fmt.Errorf("reading secret file: %w", err)
		}
		defer f.Close()

		b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
		if err != nil {
			return secret.Bytes{}, fmt.Errorf("reading secret file %s: %w", r.File, err)
		}
		defer clear(b)
		if len(b) > maxSecretFile {
			return secret.Bytes{}, fmt.Errorf("secret file %s is larger than %d bytes", r.File, maxSecretFile)
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return secret.Bytes{}, fmt.Errorf("secret file %s is empty", r.File)
		}
		return secret.New(b), nil
	}
	return secret.Bytes{}, errors.New("secret reference is empty, want env or file")
}

// Options are the dependencies of an Issuer. Zero values pick defaults.
type Options struct {
	Logger *slog.Logger     // default: discards
	Rand   io.Reader        // default: crypto/rand; must be safe for concurrent use
	Now    func() time.Time // default: time.Now

	// MaxConns bounds the connections to each database. Default 4.
	MaxConns int32

	// RevokeConcurrency bounds parallel revocations in RevokeEach,
	// RevokeMany and RevokeLogins.
	// Default MaxConns.
	RevokeConcurrency int

	// ConnectTimeout bounds each connection attempt. Default 5s.
	ConnectTimeout time.Duration
}

var roleNamePattern = regexp.MustCompile(`^[a-z0-9_-]{1,63}$`)

// role is a validated Role with its parsed templates.
type role struct {
	Role
	creation   *template.Template
	revocation *template.Template // nil: REASSIGN OWNED and DROP OWNED
	pool       *pgxpool.Pool
	backend    string
}

const defaultCreation = `CREATE ROLE {{.Username}} WITH LOGIN PASSWORD {{.Password}} VALID UNTIL {{.Expiration}}`

// validate checks r and parses its templates. The error names the role.
func (r Role) validate() (*role, error) {
	if !roleNamePattern.MatchString(r.Name) {
		return nil, fmt.Errorf("role name %q is invalid, want 1 to 63 characters of [a-z0-9_-]", r.Name)
	}
	fail := func(format string, args ...any) (*role, error) {
		return nil, fmt.Errorf("role %q: "+format, append([]any{r.Name}, args...)...)
	}

	if r.DSN == "" {
		return fail("dsn is missing")
	}
	if r.DefaultTTL <= 0 || r.MaxTTL <= 0 {
		return fail("default_ttl %v and max_ttl %v must be positive", r.DefaultTTL, r.MaxTTL)
	}
	if r.DefaultTTL > r.MaxTTL {
		return fail("default_ttl %v exceeds max_ttl %v", r.DefaultTTL, r.MaxTTL)
	}

	creation := r.Creation
	if strings.TrimSpace(creation) == "" {
		creation = defaultCreation
	}
	out := &role{Role: r}
	var err error
	out.creation, err = parseTemplate("creation", creation, creationData{
		Username: `"u"`, Password: `'p'`, Expiration: `'2000-01-01 00:00:00+00'`,
	})
	if err != nil {
		return fail("%v", err)
	}
	if strings.TrimSpace(r.Revocation) != "" {
		out.revocation, err = parseTemplate("revocation", r.Revocation, revocationData{Username: `"u"`})
		if err != nil {
			return fail("%v", err)
		}
	}
	return out, nil
}

// parseTemplate parses text and runs it once on sample data, so a field
// that does not exist fails at load time instead of at the first request.
func parseTemplate(name, text string, sample any) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s template: %w", name, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, sample); err != nil {
		return nil, fmt.Errorf("%s template: %w", name, err)
	}
	rendered := b.String()
	if !strings.Contains(rendered, `"u"`) {
		return nil, fmt.Errorf("%s template does not use {{.Username}}", name)
	}

	// Templates written for Vault quote the values themselves, which here
	// would quote them twice and fail at the first issuance.
	for _, quoted := range []struct{ sample, field string }{
		{`""u""`, "{{.Username}}"},
		{`''p''`, "{{.Password}}"},
		{`''2000-01-01`, "{{.Expiration}}"},
	} {
		if strings.Contains(rendered, quoted.sample) {
			return nil, fmt.Errorf("%s template quotes %s, remove the quotes because ward inserts it already quoted", name, quoted.field)
		}
	}
	return t, nil
}

// creationData is the input of a creation template. Every field is
// already quoted for SQL.
type creationData struct {
	Username   string
	Password   string
	Expiration string
}

// revocationData is the input of a revocation template.
type revocationData struct {
	Username string
}
