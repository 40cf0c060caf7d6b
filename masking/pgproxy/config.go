package pgproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"ward.dev/ward/crypto/secret"
)

// ErrConfig wraps every configuration error; the message names file:line.
var ErrConfig = errors.New("invalid pgproxy configuration")

// maxConfigSize bounds the configuration file read into memory.
const maxConfigSize = 1 << 20

// Lineage policies for outputs whose source columns cannot be established.
const (
	UnknownRedact = "redact"
	UnknownReject = "reject"
)

// Write policies.
const (
	WritesReadOnly    = "read-only"
	WritesPassthrough = "passthrough"
)

// Schema change policies.
const (
	DDLReject = "reject"
	DDLAllow  = "allow"
)

// Upstream TLS modes.
const (
	TLSDisable    = "disable"
	TLSVerifyFull = "verify-full"
)

// Config is the proxy configuration. Relative paths are relative to the
// directory of the configuration file. A Config is read-only after Load.
type Config struct {
	// Listen is the client-facing address, 127.0.0.1:6432 by default.
	Listen string `yaml:"listen"`
	// Environment is the Casbin domain of the proxy's callers.
	Environment string `yaml:"environment"`
	// TLS, when set, offers TLS 1.3 to clients and accepts ward client
	// certificates signed by ClientCAFile.
	TLS *ServerTLS `yaml:"tls"`
	// Upstream is the database the proxy connects to.
	Upstream Upstream `yaml:"upstream"`
	// Policy names the Casbin model and policy files. It is required by
	// "ward pgproxy" and rejected inside "ward serve", which has its own.
	Policy PolicyFiles `yaml:"policy"`
	// Rules is the masking rules file; MaskingKeyFile the masking key that
	// keyed transformers derive their keys from.
	Rules          string `yaml:"rules"`
	MaskingKeyFile string `yaml:"masking_key_file"`
	// UnknownLineage is redact (default) or reject.
	UnknownLineage string `yaml:"unknown_lineage"`
	// Writes is read-only (default) or passthrough.
	Writes string `yaml:"writes"`
	// DDL is reject (default) or allow: whether callers may change the
	// schema (CREATE, ALTER, DROP, DO, temporary objects) in passthrough
	// mode. A caller who may change the schema can redefine what a name
	// reads (a view, a temporary table that hides one, a search_path set
	// inside a function), and the proxy detects such changes only in part
	// and within catalogTTL.
	// NOTE: with allow, a statement that waits on a lock held by another
	// session's schema change is traced against the definition from before
	// that change commits.
	DDL string `yaml:"ddl"`
	// Strict forbids using a column the caller may not see in WHERE, JOIN,
	// ORDER BY, GROUP BY or DISTINCT, and rejects catalog views that expose
	// values, such as pg_stats.
	Strict bool `yaml:"strict"`
	// Logins are static client logins, for development and tests; the broker
	// issues short-lived ones in production.
	Logins []StaticLogin `yaml:"logins"`
	Limits Limits        `yaml:"limits"`

	file string
	root *yaml.Node // for the lines of errors found after parsing
}

// Where returns "file:line: key" for an error about key that is found
// after parsing, such as a file the key names that cannot be read.
func (c *Config) Where(key string) string {
	if c.root == nil {
		return c.file + ": " + key
	}
	return fmt.Sprintf("%s:%d: %s", c.file, lineOf(c.root, key), key)
}

// ServerTLS is the client-facing TLS configuration.
type ServerTLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
	// Require rejects clients that do not start TLS.
	Require bool `yaml:"require"`
}

// Upstream is the address, database and login the proxy connects with.
type Upstream struct {
	Address    string    `yaml:"address"`
	Database   string    `yaml:"database"`
	User       string    `yaml:"user"`
	Password   SecretRef `yaml:"password"`
	TLS        string    `yaml:"tls"`
	CAFile     string    `yaml:"ca_file"`
	ServerName string    `yaml:"server_name"`
}

// PolicyFiles names the Casbin model and policy.
type PolicyFiles struct {
	Model  string `yaml:"model"`
	Policy string `yaml:"policy"`
}

// StaticLogin is one client login from the configuration file.
type StaticLogin struct {
	User     string    `yaml:"user"`
	SPIFFEID string    `yaml:"spiffe_id"`
	Password SecretRef `yaml:"password"`
}

// Limits bound what one client may use.
type Limits struct {
	// MaxMessageBytes bounds one protocol message in either direction.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxConnections bounds concurrent client connections.
	MaxConnections int `yaml:"max_connections"`
	// ConnectTimeout bounds the upstream login.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// SecretRef names where a secret is kept: an environment variable or a
// file. The secret itself is never written in the configuration.
type SecretRef struct {
	Env  string `yaml:"env"`
	File string `yaml:"file"`
}

// IsZero reports whether the reference names nothing.
func (r SecretRef) IsZero() bool { return r.Env == "" && r.File == "" }

// Resolve reads the secret. A file's trailing newline is dropped.
func (r SecretRef) Resolve() (secret.Bytes, error) {
	switch {
	case r.Env != "":
		v, ok := os.LookupEnv(r.Env)
		if !ok || v == "" {
			return secret.Bytes{}, fmt.Errorf("environment variable %s is not set", r.Env)
		}
		return secret.New([]byte(v)), nil
	case r.File != "":
		f, err := os.Open(r.File)
		if err != nil {
			return secret.Bytes{}, err
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, 64<<10))
		if err != nil {
			return secret.Bytes{}, err
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return secret.Bytes{}, fmt.Errorf("secret file %s is empty", r.File)
		}
		s := secret.New(b)
		clear(b)
		return s, nil
	default:
		return secret.Bytes{}, errors.New("secret reference names neither env nor file")
	}
}

// Defaults for unset settings.
const (
	DefaultListen          = "127.0.0.1:6432"
	DefaultMaxMessageBytes = 8 << 20
	DefaultMaxConnections  = 256
	DefaultConnectTimeout  = 10 * time.Second
)

// LoadConfig reads and validates the configuration file at path.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, path, err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrConfig, path, maxConfigSize)
	}
	cfg, err := ParseConfig(path, data)
	if err != nil {
		return nil, err
	}
	cfg.resolvePaths(filepath.Dir(path))
	return cfg, nil
}

var yamlLine = regexp.MustCompile(`line (\d+): `)

// ParseConfigNode decodes and validates the configuration in n, a mapping
// node of a larger file such as the pgproxy section of ward serve's
// configuration. Errors name file and the line in it; relative paths are
// resolved against dir.
func ParseConfigNode(file, dir string, n *yaml.Node) (*Config, error) {
	if n == nil || n.Kind != yaml.MappingNode {
		line := 0
		if n != nil {
			line = n.Line
		}
		return nil, fmt.Errorf("%w: %s:%d: want a mapping of pgproxy settings", ErrConfig, file, line)
	}
	if err := checkKnownKeys(file, n, reflect.TypeOf(Config{})); err != nil {
		return nil, err
	}
	cfg := &Config{file: file, root: n}
	if err := n.Decode(cfg); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrConfig, yamlErr(file, err))
	}
	cfg.applyDefaults()
	if err := cfg.validate(n); err != nil {
		return nil, err
	}
	cfg.resolvePaths(dir)
	return cfg, nil
}

// checkKnownKeys rejects mapping keys that no yaml tag of t names, because
// yaml.v3 checks unknown fields only when decoding from bytes.
func checkKnownKeys(file string, n *yaml.Node, t reflect.Type) error {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	switch {
	case t.Kind() != reflect.Struct:
		return nil
	case n.Kind == yaml.SequenceNode:
		for _, item := range n.Content {
			if err := checkKnownKeys(file, item, t); err != nil {
				return err
			}
		}
		return nil
	case n.Kind != yaml.MappingNode:
		return nil
	}

	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			fields[tag] = f.Type
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		ft, ok := fields[k.Value]
		if !ok {
			return fmt.Errorf("%w: %s:%d: field %s not found in type %s", ErrConfig, file, k.Line, k.Value, t)
		}
		if err := checkKnownKeys(file, n.Content[i+1], ft); err != nil {
			return err
		}
	}
	return nil
}

// ParseConfig parses and validates configuration data; file names it in
// errors. Paths are left as written.
func ParseConfig(file string, data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrConfig, yamlErr(file, err))
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%w: %s: empty file", ErrConfig, file)
	}
	cfg := &Config{file: file, root: root.Content[0]}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrConfig, yamlErr(file, err))
	}
	cfg.applyDefaults()
	if err := cfg.validate(root.Content[0]); err != nil {
		return nil, err
	}
	return cfg, nil
}

// yamlErr rewrites yaml.v3's "yaml: line N: msg" as "file:N: msg".
func yamlErr(file string, err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
	if m := yamlLine.FindStringSubmatchIndex(msg); m != nil && m[0] == 0 {
		return file + ":" + msg[m[2]:m[3]] + ": " + msg[m[1]:]
	}
	return file + ": " + msg
}

func (c *Config) applyDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.UnknownLineage == "" {
		c.UnknownLineage = UnknownRedact
	}
	if c.Writes == "" {
		c.Writes = WritesReadOnly
	}
	if c.DDL == "" {
		c.DDL = DDLReject
	}
	if c.Upstream.TLS == "" {
		c.Upstream.TLS = TLSDisable
	}
	if c.Limits.MaxMessageBytes == 0 {
		c.Limits.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.Limits.MaxConnections == 0 {
		c.Limits.MaxConnections = DefaultMaxConnections
	}
	if c.Limits.ConnectTimeout == 0 {
		c.Limits.ConnectTimeout = DefaultConnectTimeout
	}
}

func (c *Config) validate(root *yaml.Node) error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("%w: %s:%d: %s: %s", ErrConfig, c.file, lineOf(root, key), key, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Environment == "":
		return bad("environment", "missing: set the Casbin domain of the proxy's callers, such as test")
	case !validHostPort(c.Listen):
		return bad("listen", "invalid address %q, want host:port with a port from 0 to 65535", c.Listen)
	case c.Upstream.Address == "":
		return bad("upstream.address", "missing: set host:port of the PostgreSQL server")
	case !validHostPort(c.Upstream.Address):
		return bad("upstream.address", "invalid address %q, want host:port with a port from 1 to 65535", c.Upstream.Address)
	case c.Upstream.Database == "":
		return bad("upstream.database", "missing")
	case c.Upstream.User == "":
		return bad("upstream.user", "missing")
	case c.Upstream.Password.IsZero():
		return bad("upstream.password", "missing: set env or file, never the password itself")
	case c.Upstream.Password.Env != "" && c.Upstream.Password.File != "":
		return bad("upstream.password", "set env or file, not both")
	case c.Upstream.TLS != TLSDisable && c.Upstream.TLS != TLSVerifyFull:
		return bad("upstream.tls", "%q is invalid, want disable or verify-full", c.Upstream.TLS)
	case (c.Policy.Model == "") != (c.Policy.Policy == ""):
		return bad("policy", "set both model and policy, or neither when ward serve provides the policy")
	case c.Rules == "":
		return bad("rules", "missing: name the masking rules file")
	case c.UnknownLineage != UnknownRedact && c.UnknownLineage != UnknownReject:
		return bad("unknown_lineage", "%q is invalid, want redact or reject", c.UnknownLineage)
	case c.Writes != WritesReadOnly && c.Writes != WritesPassthrough:
		return bad("writes", "%q is invalid, want read-only or passthrough", c.Writes)
	case c.DDL != DDLReject && c.DDL != DDLAllow:
		return bad("ddl", "%q is invalid, want reject or allow", c.DDL)
	case c.Limits.MaxMessageBytes < 1024:
		return bad("limits.max_message_bytes", "%d is too small, want at least 1024", c.Limits.MaxMessageBytes)
	case c.Limits.MaxConnections < 0:
		return bad("limits.max_connections", "must not be negative")
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		return bad("tls", "cert_file and key_file are both required")
	}
	for i, l := range c.Logins {
		key := fmt.Sprintf("logins.%d", i)
		if l.User == "" || l.SPIFFEID == "" || l.Password.IsZero() {
			return bad(key, "user, spiffe_id and password are all required")
		}
		if !strings.HasPrefix(l.SPIFFEID, "spiffe://") {
			return bad(key+".spiffe_id", "%q is not a SPIFFE ID", l.SPIFFEID)
		}
	}
	return nil
}

// lineOf returns the line of the value at a dotted key path, or of the
// deepest part of it that exists. Numeric parts index sequences.
func lineOf(root *yaml.Node, dotted string) int {
	n := root
	for _, part := range strings.Split(dotted, ".") {
		next := child(n, part)
		if next == nil {
			break
		}
		n = next
	}
	return n.Line
}

func child(n *yaml.Node, key string) *yaml.Node {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i+1]
			}
		}
	case yaml.SequenceNode:
		var idx int
		if _, err := fmt.Sscanf(key, "%d", &idx); err == nil && idx >= 0 && idx < len(n.Content) {
			return n.Content[idx]
		}
	}
	return nil
}

func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Policy.Model)
	abs(&c.Policy.Policy)
	abs(&c.Rules)
	abs(&c.MaskingKeyFile)
	abs(&c.Upstream.CAFile)
	abs(&c.Upstream.Password.File)
	if c.TLS != nil {
		abs(&c.TLS.CertFile)
		abs(&c.TLS.KeyFile)
		abs(&c.TLS.ClientCAFile)
	}
	for i := range c.Logins {
		abs(&c.Logins[i].Password.File)
	}
}

// validHostPort reports whether addr is host:port with a numeric port that
// fits in 16 bits.
func validHostPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n <= 65535
}
