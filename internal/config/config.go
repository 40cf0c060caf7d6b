// Package config loads the YAML configuration of `ward serve`.
//
// Every error names the file and line of the offending value and states what
// is wrong with it. Unknown keys are errors, so a misspelled setting is never
// silently ignored. Secrets are not written in the file itself: settings that
// need one name an environment variable or a file that holds it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrInvalid wraps every configuration error.
var ErrInvalid = errors.New("invalid configuration")

// maxFileSize bounds the configuration file read into memory.
const maxFileSize = 1 << 20

// Config is the server configuration.
type Config struct {
	DataDir     string          `yaml:"data_dir"`
	TrustDomain string          `yaml:"trust_domain"`
	Environment string          `yaml:"environment"` // the Casbin domain of this server's callers
	Listen      Listen          `yaml:"listen"`
	TTL         TTL             `yaml:"ttl"`
	Store       Store           `yaml:"store"`
	Policy      Policy          `yaml:"policy"`
	Audit       Audit           `yaml:"audit"`
	KEK         KEK             `yaml:"kek"`
	CA          CA              `yaml:"ca"`
	HSM         HSM             `yaml:"hsm"`
	Log         Log             `yaml:"log"`
	APINames    []string        `yaml:"api_names"` // extra DNS names or IPs for the API server certificate
	Databases   []DatabaseRole  `yaml:"databases"`
	Masking     Masking         `yaml:"masking"`
	Mesh        Mesh            `yaml:"mesh"`
	Kubernetes  *KubernetesAuth `yaml:"kubernetes"`
	// Vault is the Vault connection, decoded by the broker into its own
	// settings (address, ca_cert, timeout, auth). Nil when not configured.
	Vault Section `yaml:"vault"`
	// PGProxy is the PostgreSQL masking proxy's section, decoded by the
	// masking package. Nil when the proxy is not run by ward serve.
	PGProxy Section `yaml:"pgproxy"`

	path string
	root *yaml.Node // the parsed document, for Where
}

// Listen holds listener addresses.
type Listen struct {
	API string `yaml:"api"`
	XDS string `yaml:"xds"`
}

// TTL holds credential lifetimes.
type TTL struct {
	Default   Duration `yaml:"default"`
	Max       Duration `yaml:"max"`
	JoinToken Duration `yaml:"join_token"`
	// RotationGrace is how long a database login stays valid after a
	// renewal at its maximum TTL replaced it with a new one.
	RotationGrace Duration `yaml:"rotation_grace"`
}

// Store selects the lease store.
type Store struct {
	Driver string `yaml:"driver"` // sqlite
	Path   string `yaml:"path"`
}

// Policy names the Casbin model and policy files.
type Policy struct {
	Model string `yaml:"model"`
	File  string `yaml:"file"`
}

// Audit configures the audit log.
type Audit struct {
	Path string `yaml:"path"`
}

// KEK selects the key-encryption key that seals ward's keysets.
type KEK struct {
	Type  string       `yaml:"type"` // local, pkcs11 or vault-transit
	Path  string       `yaml:"path"` // local: the key file
	Vault VaultTransit `yaml:"vault"`
	// Rotation adds a new primary data key to the keyset when the current
	// one reaches either limit; older keys still decrypt.
	Rotation Rotation `yaml:"rotation"`
}

// Rotation bounds the use of one primary data key.
type Rotation struct {
	MaxAge         Duration `yaml:"max_age"`         // default 90 days (2160h)
	MaxEncryptions uint64   `yaml:"max_encryptions"` // default 2^30
}

// VaultTransit locates a Vault Transit key used as the KEK.
type VaultTransit struct {
	Address string    `yaml:"address"`
	Token   SecretRef `yaml:"token"`
	Mount   string    `yaml:"mount"`
	Key     string    `yaml:"key"`
	CACert  string    `yaml:"ca_cert"`
}

// CA selects the certificate authority backend.
type CA struct {
	// Backend is local, pkcs11 for a CA key that never leaves the HSM, or
	// vault-pki for certificates signed by Vault's PKI engine.
	Backend  string   `yaml:"backend"`
	VaultPKI VaultPKI `yaml:"vault_pki"`
}

// VaultPKI names the Vault PKI role that signs workload certificates.
type VaultPKI struct {
	Mount string `yaml:"mount"` // default pki
	Role  string `yaml:"role"`
}

// HSM locates the PKCS#11 token used by kek.type pkcs11 and ca.backend
// pkcs11. The PIN comes from a file or an environment variable.
type HSM struct {
	Module     string `yaml:"module"`
	TokenLabel string `yaml:"token_label"`
	PINFile    string `yaml:"pin_file"`
	PINEnv     string `yaml:"pin_env"`
	Sessions   int    `yaml:"sessions"`
	CALabel    string `yaml:"ca_label"`
	KEKLabel   string `yaml:"kek_label"`
}

// DatabaseRole is one kind of dynamic PostgreSQL login that ward creates
// per lease (issuer: postgres). The admin password is read from an
// environment variable or a file, never from this file.
type DatabaseRole struct {
	Name string `yaml:"name"`
	// Issuer is postgres (ward creates the login itself, the default) or
	// vault (Vault's database secrets engine at VaultPath, such as
	// database/creds/orders).
	Issuer     string    `yaml:"issuer"`
	VaultPath  string    `yaml:"vault_path"`
	DSN        string    `yaml:"dsn"`
	Password   SecretRef `yaml:"password"`
	Creation   string    `yaml:"creation"`
	Revocation string    `yaml:"revocation"`
	DefaultTTL Duration  `yaml:"default_ttl"`
	MaxTTL     Duration  `yaml:"max_ttl"`

	// Line is the line of the configuration file where the entry starts.
	Line int `yaml:"-"`
}

// UnmarshalYAML decodes the entry and records its line.
func (d *DatabaseRole) UnmarshalYAML(n *yaml.Node) error {
	type plain DatabaseRole
	if err := n.Decode((*plain)(d)); err != nil {
		return err
	}
	d.Line = n.Line
	return nil
}

// KubernetesAuth enables POST /v1/auth/kubernetes: workloads exchange a
// projected service-account token, checked against the cluster's JWKS or
// with TokenReview, for their first certificate.
type KubernetesAuth struct {
	Audience        string `yaml:"audience"`
	TokenReview     bool   `yaml:"token_review"`
	Issuer          string `yaml:"issuer"`
	JWKSFile        string `yaml:"jwks_file"`
	JWKSURL         string `yaml:"jwks_url"`
	APIServer       string `yaml:"api_server"`
	CAFile          string `yaml:"ca_file"`
	BearerTokenFile string `yaml:"bearer_token_file"`
}

// Section is a part of the file decoded later by the package that owns it.
// Its node keeps the file's line numbers for that package's errors.
type Section struct {
	Node *yaml.Node
}

// UnmarshalYAML keeps the node.
func (s *Section) UnmarshalYAML(n *yaml.Node) error {
	s.Node = n
	return nil
}

// Set reports whether the section is present.
func (s Section) Set() bool { return s.Node != nil }

// Mesh configures the xDS control plane on listen.xds.
type Mesh struct {
	Enabled bool `yaml:"enabled"`
	// GRPCClientScope is "all" (every gRPC node learns every service, so a
	// forbidden call fails with PermissionDenied) or "permitted" (only the
	// services it may call).
	GRPCClientScope string        `yaml:"grpc_client_scope"`
	Services        []MeshService `yaml:"services"`
}

// MeshService is one workload in the mesh.
type MeshService struct {
	Name      string   `yaml:"name" json:"name"`
	SPIFFEID  string   `yaml:"spiffe_id" json:"spiffe_id"`
	Kind      string   `yaml:"kind" json:"kind"` // envoy or grpc
	Endpoints []string `yaml:"endpoints" json:"endpoints"`
	AppPort   uint32   `yaml:"app_port" json:"app_port,omitempty"`
	LocalPort uint32   `yaml:"local_port" json:"local_port,omitempty"`
}

// Masking configures the tokenize and detokenize API.
type Masking struct {
	Rules   string `yaml:"rules"`    // masking rules file; its tokenize rules name columns
	KeyFile string `yaml:"key_file"` // masking key, sealed by the keyset; default data_dir/masking.key
}

// SecretRef names an environment variable or a file that holds a secret.
type SecretRef struct {
	Env  string `yaml:"env"`
	File string `yaml:"file"`
}

// Log configures server logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
}

// Duration is a time.Duration written as "90s", "10m" or "24h".
type Duration struct{ time.Duration }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return &fieldError{line: n.Line, msg: fmt.Sprintf("invalid duration %q, want a positive value such as 90s, 10m or 24h", n.Value)}
	}
	d.Duration = v
	return nil
}

// Path returns the file the configuration was loaded from, or "" for defaults.
func (c *Config) Path() string { return c.path }

// Where returns "file:line" of a dotted key such as "databases" or
// "mesh.services", for messages about settings that other packages check.
// Without a file it returns the key itself.
func (c *Config) Where(key string) string {
	if c.path == "" || c.root == nil {
		return key
	}
	return fmt.Sprintf("%s:%d: %s", c.path, lineOf(c.root, key), key)
}

// Defaults returns the configuration used when no file sets a value.
func Defaults() Config {
	return Config{
		DataDir:     "./ward-data",
		TrustDomain: "ward.test",
		Environment: "dev",
		Listen:      Listen{API: "127.0.0.1:8443", XDS: "127.0.0.1:18000"},
		TTL: TTL{
			Default:       Duration{time.Hour},
			Max:           Duration{24 * time.Hour},
			JoinToken:     Duration{15 * time.Minute},
			RotationGrace: Duration{5 * time.Minute},
		},
		Store: Store{Driver: "sqlite"},
		KEK:   KEK{Type: "local", Rotation: Rotation{MaxAge: Duration{90 * 24 * time.Hour}, MaxEncryptions: 1 << 30}},
		CA:    CA{Backend: "local"},
		Log:   Log{Level: "info", Format: "text"},
	}
}

type fieldError struct {
	line int
	msg  string
}

func (e *fieldError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// Load reads path over the defaults and validates the result. Unlike
// Parse, it requires trust_domain: a deployment that forgot it would
// otherwise issue identities in the development domain ward.test.
func Load(path string) (Config, error) {
	data, err := readBounded(path)
	if err != nil {
		return Config{}, err
	}
	cfg, err := Parse(path, data)
	if err != nil {
		return Config{}, err
	}
	if !hasTopKey(cfg.root, "trust_domain") {
		return Config{}, fmt.Errorf("%w: %s:1: trust_domain: missing; set this deployment's SPIFFE trust domain, such as example.org (only ward serve --dev defaults to ward.test)", ErrInvalid, path)
	}
	cfg.resolvePaths(filepath.Dir(path))
	return cfg, nil
}

// hasTopKey reports whether the document root maps key at its top level.
func hasTopKey(root *yaml.Node, key string) bool {
	if root == nil || root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return false
	}
	m := root.Content[0]
	if m.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return true
		}
	}
	return false
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	defer f.Close()
	buf := make([]byte, maxFileSize+1)
	n, err := f.Read(buf)
	for err == nil && n < len(buf) {
		var m int
		m, err = f.Read(buf[n:])
		n += m
	}
	if n > maxFileSize {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrInvalid, path, maxFileSize)
	}
	return buf[:n], nil
}

// Parse decodes YAML data over the defaults; name is used in error messages.
func Parse(name string, data []byte) (Config, error) {
	cfg := Defaults()
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Config{}, fmt.Errorf("%w: %s", ErrInvalid, yamlError(name, err))
	}
	if len(root.Content) == 0 {
		cfg.path = name
		return cfg, cfg.validate(name, &root)
	}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("%w: %s", ErrInvalid, yamlError(name, err))
	}
	cfg.path = name
	cfg.root = &root
	return cfg, cfg.validate(name, &root)
}

// yamlError rewrites yaml.v3's "yaml: line N: msg" errors as "file:N: msg".
func yamlError(name string, err error) string {
	var fe *fieldError
	if errors.As(err, &fe) {
		return fmt.Sprintf("%s:%d: %s", name, fe.line, fe.msg)
	}
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

// validate checks values; root locates each key's line for the message.
func (c *Config) validate(name string, root *yaml.Node) error {
	fail := func(key, format string, args ...any) error {
		return fmt.Errorf("%w: %s:%d: %s: %s", ErrInvalid, name, lineOf(root, key), key, fmt.Sprintf(format, args...))
	}

	if c.TrustDomain == "" || strings.ContainsAny(c.TrustDomain, "/:@ ") || strings.ToLower(c.TrustDomain) != c.TrustDomain {
		return fail("trust_domain", "invalid trust domain %q, want lowercase letters, digits, dots, dashes and underscores (SPIFFE ID specification)", c.TrustDomain)
	}
	if c.Environment == "" {
		return fail("environment", "must not be empty")
	}
	for key, addr := range map[string]string{"listen.api": c.Listen.API, "listen.xds": c.Listen.XDS} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fail(key, "invalid address %q, want host:port", addr)
		}
	}
	if c.TTL.Default.Duration <= 0 {
		return fail("ttl.default", "must be positive")
	}
	if c.TTL.Max.Duration < c.TTL.Default.Duration {
		return fail("ttl.max", "%s is shorter than ttl.default %s", c.TTL.Max.Duration, c.TTL.Default.Duration)
	}
	if c.TTL.JoinToken.Duration <= 0 {
		return fail("ttl.join_token", "must be positive")
	}
	if c.Store.Driver != "sqlite" {
		return fail("store.driver", "unknown driver %q, want sqlite", c.Store.Driver)
	}
	switch c.KEK.Type {
	case "local", "pkcs11":
	case "vault-transit":
		v := c.KEK.Vault
		if v.Address == "" || v.Key == "" {
			return fail("kek.vault", "vault-transit needs address and key")
		}
		if (v.Token.Env == "") == (v.Token.File == "") {
			return fail("kek.vault.token", "needs exactly one of env or file")
		}
	default:
		return fail("kek.type", "unknown KEK type %q, want local, pkcs11 or vault-transit", c.KEK.Type)
	}
	// NIST SP 800-38D allows at most 2^32 AES-GCM encryptions under one key
	// with random IVs.
	if c.KEK.Rotation.MaxEncryptions == 0 || c.KEK.Rotation.MaxEncryptions > 1<<32 {
		return fail("kek.rotation.max_encryptions", "%d out of range 1 to 2^32", c.KEK.Rotation.MaxEncryptions)
	}
	if c.KEK.Rotation.MaxAge.Duration <= 0 {
		return fail("kek.rotation.max_age", "must be positive")
	}
	switch c.CA.Backend {
	case "local", "pkcs11":
	case "vault-pki":
		if !c.Vault.Set() {
			return fail("ca.backend", "vault-pki needs a vault: section")
		}
		if c.CA.VaultPKI.Role == "" {
			return fail("ca.vault_pki.role", "missing: vault-pki needs the PKI role that signs workload certificates")
		}
	default:
		return fail("ca.backend", "unknown CA backend %q, want local, pkcs11 or vault-pki", c.CA.Backend)
	}
	if c.KEK.Type == "pkcs11" || c.CA.Backend == "pkcs11" {
		h := c.HSM
		switch {
		case h.Module == "":
			return fail("hsm.module", "missing: pkcs11 needs the path of the PKCS#11 library")
		case h.TokenLabel == "":
			return fail("hsm.token_label", "missing: pkcs11 needs the token label")
		case (h.PINFile == "") == (h.PINEnv == ""):
			return fail("hsm", "needs exactly one of pin_file or pin_env")
		case h.Sessions < 0 || h.Sessions > 256:
			return fail("hsm.sessions", "%d out of range 0 to 256", h.Sessions)
		}
	}
	for i, db := range c.Databases {
		at := fmt.Sprintf("%s:%d: databases[%d]", name, db.Line, i)
		if db.Issuer == "vault" {
			switch {
			case db.Name == "":
				return fmt.Errorf("%w: %s: missing name", ErrInvalid, at)
			case !c.Vault.Set():
				return fmt.Errorf("%w: %s (%s): issuer vault needs a vault: section", ErrInvalid, at, db.Name)
			case !strings.Contains(db.VaultPath, "/creds/"):
				return fmt.Errorf("%w: %s (%s): vault_path %q must look like <mount>/creds/<role>", ErrInvalid, at, db.Name, db.VaultPath)
			}
			continue
		}
		if db.Issuer != "" && db.Issuer != "postgres" {
			return fmt.Errorf("%w: %s (%s): unknown issuer %q, want postgres or vault", ErrInvalid, at, db.Name, db.Issuer)
		}
		switch {
		case db.Name == "":
			return fmt.Errorf("%w: %s: missing name", ErrInvalid, at)
		case db.DSN == "":
			return fmt.Errorf("%w: %s (%s): missing dsn", ErrInvalid, at, db.Name)
		case (db.Password.Env == "") == (db.Password.File == ""):
			return fmt.Errorf("%w: %s (%s): password needs exactly one of env or file", ErrInvalid, at, db.Name)
		case db.MaxTTL.Duration > 0 && db.DefaultTTL.Duration > db.MaxTTL.Duration:
			return fmt.Errorf("%w: %s (%s): default_ttl %s is longer than max_ttl %s", ErrInvalid, at, db.Name, db.DefaultTTL.Duration, db.MaxTTL.Duration)
		}
	}
	if k := c.Kubernetes; k != nil && k.Issuer != "" {
		if u, err := url.Parse(k.Issuer); err != nil || u.Scheme != "https" || u.Host == "" {
			return fail("kubernetes.issuer", "invalid issuer %q, want the cluster's https:// issuer URL", k.Issuer)
		}
	}
	switch c.Mesh.GRPCClientScope {
	case "", "all", "permitted":
	default:
		return fail("mesh.grpc_client_scope", "unknown scope %q, want all or permitted", c.Mesh.GRPCClientScope)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fail("log.level", "unknown level %q, want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fail("log.format", "unknown format %q, want text or json", c.Log.Format)
	}
	return nil
}

// lineOf returns the line of a dotted key in the document, or of the closest
// parent that exists, or 1.
func lineOf(root *yaml.Node, dotted string) int {
	line := 1
	node := root
	if node.Kind == yaml.DocumentNode && len(node.Content) > 0 {
		node = node.Content[0]
	}
	for _, part := range strings.Split(dotted, ".") {
		if node == nil || node.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(node.Content); i += 2 {
			if node.Content[i].Value == part {
				line = node.Content[i].Line
				next = node.Content[i+1]
				break
			}
		}
		if next == nil {
			return line
		}
		node = next
	}
	return line
}

// resolvePaths makes relative paths relative to the configuration file's directory.
func (c *Config) resolvePaths(dir string) {
	paths := []*string{&c.DataDir, &c.Store.Path, &c.Policy.Model, &c.Policy.File, &c.Audit.Path, &c.KEK.Path,
		&c.HSM.PINFile, &c.KEK.Vault.Token.File, &c.KEK.Vault.CACert, &c.Masking.Rules, &c.Masking.KeyFile}
	for i := range c.Databases {
		paths = append(paths, &c.Databases[i].Password.File)
	}
	if k := c.Kubernetes; k != nil {
		paths = append(paths, &k.JWKSFile, &k.CAFile, &k.BearerTokenFile)
	}
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// FillDataDirPaths sets every unset file path to its default inside DataDir.
func (c *Config) FillDataDirPaths() {
	set := func(p *string, name string) {
		if *p == "" {
			*p = filepath.Join(c.DataDir, name)
		}
	}
	set(&c.Store.Path, "ward.db")
	set(&c.Policy.Model, "model.conf")
	set(&c.Policy.File, "policy.csv")
	set(&c.Audit.Path, "audit.log")
	set(&c.KEK.Path, "kek.key")
	set(&c.Masking.KeyFile, "masking.key")
}
