package pgproxy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const validConfig = `environment: test
upstream:
  address: 127.0.0.1:5432
  database: chinook
  user: ward
  password: {env: WARD_UPSTREAM_PASSWORD}
policy: {model: model.conf, policy: policy.csv}
rules: rules.yaml
`

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig("p.yaml", []byte(validConfig))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if cfg.Listen != DefaultListen || cfg.Writes != WritesReadOnly || cfg.UnknownLineage != UnknownRedact || cfg.Upstream.TLS != TLSDisable {
		t.Errorf("defaults = %q %q %q %q", cfg.Listen, cfg.Writes, cfg.UnknownLineage, cfg.Upstream.TLS)
	}
}

func TestParseConfigErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown key", validConfig + "bogus: 1\n", "p.yaml:9: field bogus not found"},
		{"bad writes", validConfig + "writes: sometimes\n", `p.yaml:9: writes: "sometimes" is invalid`},
		{"bad lineage", validConfig + "unknown_lineage: pass\n", `p.yaml:9: unknown_lineage: "pass" is invalid`},
		{"password inline", strings.Replace(validConfig, "{env: WARD_UPSTREAM_PASSWORD}", "hunter2", 1), "p.yaml:6"},
		{"no environment", strings.Replace(validConfig, "environment: test\n", "", 1), "environment: missing"},
		{"bad login", validConfig + "logins:\n  - {user: a, spiffe_id: nope, password: {env: X}}\n", `p.yaml:10: logins.0.spiffe_id: "nope" is not a SPIFFE ID`},
		{"tiny limit", validConfig + "limits: {max_message_bytes: 10}\n", "p.yaml:9: limits.max_message_bytes"},
		{"empty", "", "p.yaml: empty file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("p.yaml", []byte(c.yaml))
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("ParseConfig = %v, want ErrConfig containing %q", err, c.want)
			}
		})
	}
}

func TestSecretRefResolve(t *testing.T) {
	t.Setenv("WARD_TEST_SECRET", "s3cret")
	s, err := SecretRef{Env: "WARD_TEST_SECRET"}.Resolve()
	if err != nil || !s.Equal([]byte("s3cret")) {
		t.Errorf("Resolve(env) = %v, %v", s, err)
	}
	if got := s.String(); strings.Contains(got, "s3cret") {
		t.Errorf("secret prints as %q", got)
	}
	if _, err := (SecretRef{Env: "WARD_TEST_UNSET_SECRET"}).Resolve(); err == nil {
		t.Error("Resolve of an unset variable succeeded")
	}
}

func TestParseConfigNode(t *testing.T) {
	var doc yaml.Node
	file := "ward.yaml"
	text := "listen:\n  api: 127.0.0.1:8443\npgproxy:\n" + indent(validConfig)
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	section := doc.Content[0].Content[3]
	cfg, err := ParseConfigNode(file, "/etc/ward", section)
	if err != nil {
		t.Fatalf("ParseConfigNode: %v", err)
	}
	if cfg.Rules != "/etc/ward/rules.yaml" || cfg.Upstream.Database != "chinook" {
		t.Errorf("ParseConfigNode: rules %q, database %q", cfg.Rules, cfg.Upstream.Database)
	}

	bad := "pgproxy:\n" + indent(strings.Replace(validConfig, "  user: ward\n", "  user: ward\n  pasword: x\n", 1))
	if err := yaml.Unmarshal([]byte(bad), &doc); err != nil {
		t.Fatal(err)
	}
	_, err = ParseConfigNode(file, "", doc.Content[0].Content[1])
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "ward.yaml:7: field pasword not found") {
		t.Errorf("ParseConfigNode(misspelled key) = %v, want ward.yaml:7 error", err)
	}
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = "  " + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestLoadConfigExample(t *testing.T) {
	cfg, err := LoadConfig("testdata/pgproxy.yaml")
	if err != nil {
		t.Fatalf("LoadConfig(example): %v", err)
	}
	if !strings.HasSuffix(cfg.Rules, "testdata/rules.yaml") || cfg.Limits.ConnectTimeout.Seconds() != 10 || len(cfg.Logins) != 1 {
		t.Errorf("LoadConfig(example) = rules %q, timeout %v, %d logins", cfg.Rules, cfg.Limits.ConnectTimeout, len(cfg.Logins))
	}
}

// TestLoadErrorsNameLine checks that what Load finds wrong after parsing
// (a missing rules file, an unset password variable) names the
// configuration file, the line and the key.
func TestLoadErrorsNameLine(t *testing.T) {
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte("version: 1\ndefault: keep\ncolumns: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WARD_UPSTREAM_PASSWORD", "")
	cases := []struct{ name, rules, want string }{
		{"missing rules file", "/nonexistent/rules.yaml", "p.yaml:8: rules"},
		{"unset password variable", rulesFile, "p.yaml:6: upstream.password"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig("p.yaml", []byte(strings.Replace(validConfig, "rules.yaml", c.rules, 1)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Load(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Load = %v, want an error naming %s", err, c.want)
			}
		})
	}
}
