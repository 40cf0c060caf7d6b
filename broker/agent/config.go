package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrInvalidConfig wraps every agent configuration error.
var ErrInvalidConfig = errors.New("invalid agent configuration")

// maxConfigSize bounds the configuration file read into memory.
const maxConfigSize = 1 << 20

// Authentication methods of Config.Auth.Method.
const (
	AuthJoinToken   = "join_token"
	AuthKubernetes  = "kubernetes"
	AuthCertificate = "certificate"
)

// Config is the agent configuration, read from YAML by LoadConfig.
type Config struct {
	Broker      Broker   `yaml:"broker"`
	Auth        Auth     `yaml:"auth"`
	IdentityTTL Duration `yaml:"identity_ttl"` // lifetime of the agent's own certificate
	OutputDir   string   `yaml:"output_dir"`
	// StateDir, when set, keeps the agent's own certificate so that a
	// restart renews with it instead of needing a new join token.
	StateDir    string       `yaml:"state_dir"`
	Owner       *Owner       `yaml:"owner"`
	Credentials []Credential `yaml:"credentials"`
	Templates   []Template   `yaml:"templates"`
	Notify      Notify       `yaml:"notify"`
	WorkloadAPI Socket       `yaml:"workload_api"`
	SDS         Socket       `yaml:"sds"`
	Health      Health       `yaml:"health"`
	// RevokeOnShutdown revokes the leases of the current credentials when
	// the agent stops; the policy must allow revoke on them.
	RevokeOnShutdown bool `yaml:"revoke_on_shutdown"`

	path string
}

// Broker locates the ward API.
type Broker struct {
	Addr   string `yaml:"addr"`
	CAFile string `yaml:"ca_file"`
}

// Auth selects how the agent obtains its first certificate, and again
// whenever its own certificate has expired.
type Auth struct {
	Method        string `yaml:"method"` // join_token, kubernetes or certificate
	JoinTokenFile string `yaml:"join_token_file"`
	TokenFile     string `yaml:"token_file"` // projected service-account token (kubernetes)
	CertFile      string `yaml:"cert_file"`  // an existing ward certificate (certificate)
	KeyFile       string `yaml:"key_file"`
}

// Owner is the numeric owner given to written files; nil keeps the agent's.
type Owner struct {
	UID int `yaml:"uid"`
	GID int `yaml:"gid"`
}

// Credential is one entry of credentials: what to fetch and where to write
// it. Path is the credential's resource path, and its first segment names
// the kind (x509, jwt); each kind reads the fields it needs.
type Credential struct {
	Name     string   `yaml:"name"`
	Path     string   `yaml:"path"`
	TTL      Duration `yaml:"ttl"`
	Audience []string `yaml:"audience"` // jwt
	// Files maps the credential's fields (cert, key, bundle, token) to
	// file names under OutputDir; each kind has defaults.
	Files map[string]string `yaml:"files"`
	Mode  FileMode          `yaml:"mode"`

	line int
	kind kind
}

// Template renders Go text/template Source (a file) or Inline into
// Destination under OutputDir.
type Template struct {
	Name        string   `yaml:"name"`
	Source      string   `yaml:"source"`
	Inline      string   `yaml:"inline"`
	Destination string   `yaml:"destination"`
	Mode        FileMode `yaml:"mode"`

	line int
}

// Notify selects how the application learns of new credentials: a signal to
// the process whose id is in PIDFile, or to the child in --exec mode.
type Notify struct {
	PIDFile string `yaml:"pid_file"`
	Signal  string `yaml:"signal"`  // HUP by default
	OnExec  string `yaml:"on_exec"` // signal or restart, for --exec
}

// Socket is a Unix socket path; empty disables the service.
type Socket struct {
	Socket string `yaml:"socket"`
}

// Health is the local listener of /healthz and /readyz.
type Health struct {
	Listen string `yaml:"listen"`
}

// Duration is a time.Duration written as "30s" or "1h".
type Duration struct{ time.Duration }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v <= 0 {
		return fmt.Errorf("line %d: invalid duration %q, want a positive value such as 30s, 10m or 1h", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

// FileMode is a permission mode written in octal, such as 0640.
type FileMode uint32

// UnmarshalYAML parses an octal mode. It rejects bits beyond 0777, modes
// the owner cannot read, and modes that let group or others write or run
// the file: the files hold credentials.
func (m *FileMode) UnmarshalYAML(n *yaml.Node) error {
	v, err := strconv.ParseUint(n.Value, 8, 32)
	if err != nil || v > 0o777 || v&0o400 == 0 || v&0o033 != 0 {
		return fmt.Errorf("line %d: invalid mode %q, want octal permissions such as 0600 or 0640 that the owner can read and only the owner can write", n.Line, n.Value)
	}
	*m = FileMode(v)
	return nil
}

// Signals that notify.signal accepts.
var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
	"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT,
}

var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

// LoadConfig reads and validates the YAML file at path. Relative paths in
// it are relative to the file.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrInvalidConfig, path, err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrInvalidConfig, path, maxConfigSize)
	}
	cfg, err := ParseConfig(path, data)
	if err != nil {
		return nil, err
	}
	cfg.resolve(filepath.Dir(path))
	return cfg, nil
}

// ParseConfig decodes and validates YAML data; name is used in messages.
func ParseConfig(name string, data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidConfig, yamlError(name, err))
	}
	cfg := &Config{path: name}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidConfig, yamlError(name, err))
	}
	cfg.recordLines(&root)
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidConfig, err)
	}
	return cfg, nil
}

// Path returns the file the configuration came from.
func (c *Config) Path() string { return c.path }

func yamlError(name string, err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, 0, len(te.Errors))
		for _, m := range te.Errors {
			msgs = append(msgs, name+":"+strings.TrimPrefix(m, "line "))
		}
		return strings.Join(msgs, "; ")
	}
	return name + ":" + strings.TrimPrefix(strings.TrimPrefix(err.Error(), "yaml: "), "line ")
}

// recordLines stores the line of each list entry, so that errors about an
// entry point at it.
func (c *Config) recordLines(root *yaml.Node) {
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		seq := m.Content[i+1]
		switch m.Content[i].Value {
		case "credentials":
			for j, n := range seq.Content {
				if j < len(c.Credentials) {
					c.Credentials[j].line = n.Line
				}
			}
		case "templates":
			for j, n := range seq.Content {
				if j < len(c.Templates) {
					c.Templates[j].line = n.Line
				}
			}
		}
	}
}

func (c *Config) validate() error {
	at := func(line int) string {
		if line == 0 {
			return c.path
		}
		return c.path + ":" + strconv.Itoa(line)
	}

	u, err := url.Parse(c.Broker.Addr)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%s: broker.addr: invalid address %q, want https://host:port", c.path, c.Broker.Addr)
	}
	if c.Broker.CAFile == "" {
		return fmt.Errorf("%s: broker.ca_file: missing, name the PEM file of ward's CA", c.path)
	}
	switch c.Auth.Method {
	case AuthJoinToken:
		if c.Auth.JoinTokenFile == "" {
			return fmt.Errorf("%s: auth.join_token_file: missing for method join_token", c.path)
		}
	case AuthKubernetes:
		if c.Auth.TokenFile == "" {
			return fmt.Errorf("%s: auth.token_file: missing for method kubernetes, name the projected service-account token", c.path)
		}
	case AuthCertificate:
		if c.Auth.CertFile == "" || c.Auth.KeyFile == "" {
			return fmt.Errorf("%s: auth.cert_file and auth.key_file: both needed for method certificate", c.path)
		}
	default:
		return fmt.Errorf("%s: auth.method: unknown method %q, want join_token, kubernetes or certificate", c.path, c.Auth.Method)
	}
	if c.IdentityTTL.Duration == 0 {
		c.IdentityTTL.Duration = time.Hour
	}
	if c.OutputDir == "" && (len(c.Credentials) > 0 || len(c.Templates) > 0) {
		return fmt.Errorf("%s: output_dir: missing, name the directory credentials are written to", c.path)
	}
	if c.StateDir != "" && filepath.Clean(c.StateDir) == filepath.Clean(c.OutputDir) {
		// The application reads output_dir; the agent's key is not its own.
		return fmt.Errorf("%s: state_dir: must differ from output_dir, which the application reads", c.path)
	}
	if c.Owner != nil && (c.Owner.UID < 0 || c.Owner.GID < 0) {
		return fmt.Errorf("%s: owner: uid and gid must not be negative", c.path)
	}

	names := map[string]bool{}
	files := map[string]string{}
	claim := func(file, item string) error {
		if other, dup := files[file]; dup {
			return fmt.Errorf("file %q is written by both %s and %s", file, other, item)
		}
		files[file] = item
		return nil
	}
	for i := range c.Credentials {
		cr := &c.Credentials[i]
		item := fmt.Sprintf("credential %q", cr.Name)
		if !namePattern.MatchString(cr.Name) {
			return fmt.Errorf("%s: credentials[%d]: invalid name %q, want lowercase letters, digits, ., - and _", at(cr.line), i, cr.Name)
		}
		if names[cr.Name] {
			return fmt.Errorf("%s: %s: the name is used twice", at(cr.line), item)
		}
		names[cr.Name] = true
		k, err := kindOf(cr.Path)
		if err != nil {
			return fmt.Errorf("%s: %s: %v", at(cr.line), item, err)
		}
		if err := k.validate(cr); err != nil {
			return fmt.Errorf("%s: %s: %v", at(cr.line), item, err)
		}
		for field, file := range cr.Files {
			if !k.hasField(field) {
				return fmt.Errorf("%s: %s: files: unknown field %q, want %s", at(cr.line), item, field, strings.Join(k.fields(), ", "))
			}
			if err := checkFileName(file); err != nil {
				return fmt.Errorf("%s: %s: files.%s: %v", at(cr.line), item, field, err)
			}
		}
		cr.kind = k
		for _, f := range k.fields() {
			if err := claim(cr.file(f), item); err != nil {
				return fmt.Errorf("%s: %v", at(cr.line), err)
			}
		}
	}
	for i := range c.Templates {
		t := &c.Templates[i]
		item := fmt.Sprintf("template %q", t.Name)
		if !namePattern.MatchString(t.Name) {
			return fmt.Errorf("%s: templates[%d]: invalid name %q, want lowercase letters, digits, ., - and _", at(t.line), i, t.Name)
		}
		if (t.Source == "") == (t.Inline == "") {
			return fmt.Errorf("%s: %s: set exactly one of source and inline", at(t.line), item)
		}
		if t.Destination == "" {
			t.Destination = t.Name
		}
		if err := checkFileName(t.Destination); err != nil {
			return fmt.Errorf("%s: %s: destination: %v", at(t.line), item, err)
		}
		if err := claim(t.Destination, item); err != nil {
			return fmt.Errorf("%s: %v", at(t.line), err)
		}
	}

	if c.Notify.Signal == "" {
		c.Notify.Signal = "HUP"
	}
	c.Notify.Signal = strings.TrimPrefix(strings.ToUpper(c.Notify.Signal), "SIG")
	if _, ok := signals[c.Notify.Signal]; !ok {
		return fmt.Errorf("%s: notify.signal: unknown signal %q, want HUP, USR1, USR2, TERM, INT or QUIT", c.path, c.Notify.Signal)
	}
	switch c.Notify.OnExec {
	case "":
		c.Notify.OnExec = "signal"
	case "signal", "restart":
	default:
		return fmt.Errorf("%s: notify.on_exec: unknown action %q, want signal or restart", c.path, c.Notify.OnExec)
	}
	if c.Health.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Health.Listen); err != nil {
			return fmt.Errorf("%s: health.listen: invalid address %q, want host:port", c.path, c.Health.Listen)
		}
	}
	return nil
}

// checkFileName accepts a plain file name: output files stay directly in
// output_dir, so a configuration cannot write elsewhere.
func checkFileName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("invalid file name %q, want a plain name without / that does not start with a dot", name)
	}
	return nil
}

// file returns the file name of one field of the credential: the one
// configured under files, or the name, a dot and the kind's default suffix.
func (cr *Credential) file(field string) string {
	if f, ok := cr.Files[field]; ok {
		return f
	}
	return cr.Name + "." + cr.kind.suffix(field)
}

func (c *Config) resolve(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Broker.CAFile)
	abs(&c.Auth.JoinTokenFile)
	abs(&c.Auth.TokenFile)
	abs(&c.Auth.CertFile)
	abs(&c.Auth.KeyFile)
	abs(&c.OutputDir)
	abs(&c.StateDir)
	abs(&c.Notify.PIDFile)
	abs(&c.WorkloadAPI.Socket)
	abs(&c.SDS.Socket)
	for i := range c.Templates {
		abs(&c.Templates[i].Source)
	}
}
