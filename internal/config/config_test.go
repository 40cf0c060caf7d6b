package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/internal/config"
)

func TestParseValid(t *testing.T) {
	cfg, err := config.Parse("ward.yaml", []byte("trust_domain: example.org\nttl:\n  default: 5m\n  max: 1h\n"))
	if err != nil {
		t.Fatalf("Parse = %v, want nil", err)
	}
	if cfg.TrustDomain != "example.org" {
		t.Errorf("TrustDomain = %q, want example.org", cfg.TrustDomain)
	}
	if cfg.TTL.Max.Duration != time.Hour {
		t.Errorf("TTL.Max = %s, want 1h", cfg.TTL.Max.Duration)
	}
	if cfg.Listen.API != "127.0.0.1:8443" {
		t.Errorf("Listen.API = %q, want the default", cfg.Listen.API)
	}
}

func TestParseErrorsNameFileAndLine(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "trust_domain: a.b\nlisten:\n  apii: x\n", "ward.yaml:3"},
		{"bad duration", "ttl:\n  default: forever\n", "ward.yaml:2: invalid duration \"forever\""},
		{"max below default", "ttl:\n  default: 2h\n  max: 1h\n", "ward.yaml:3: ttl.max"},
		{"bad trust domain", "\n\ntrust_domain: Bad/Domain\n", "ward.yaml:3: trust_domain"},
		{"bad listen address", "listen:\n  api: nowhere\n", "ward.yaml:2: listen.api"},
		{"syntax error", "listen: [\n", "ward.yaml:"},
		{"wrong type", "api_names: 5\n", "ward.yaml:1"},
		{"unknown driver", "store:\n  driver: mysql\n", "ward.yaml:2: store.driver"},
		{"kubernetes issuer not a URL", "kubernetes:\n  issuer: not a url\n", "ward.yaml:2: kubernetes.issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("ward.yaml", []byte(tt.yaml))
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("Parse(%q) = %v, want ErrInvalid", tt.yaml, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) = %q, want it to contain %q", tt.yaml, err, tt.want)
			}
		})
	}
}

func TestLoadResolvesRelativePaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ward.yaml")
	if err := os.WriteFile(path, []byte("trust_domain: example.org\ndata_dir: state\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	if want := filepath.Join(dir, "state"); cfg.DataDir != want {
		t.Errorf("DataDir = %q, want %q", cfg.DataDir, want)
	}
}

// TestLoadRequiresTrustDomain loads files without trust_domain, empty or
// not: each fails naming the file and the key.
func TestLoadRequiresTrustDomain(t *testing.T) {
	for _, content := range []string{"", "data_dir: state\n", "# only a comment\n"} {
		path := filepath.Join(t.TempDir(), "ward.yaml")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := config.Load(path)
		if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), path+":1: trust_domain: missing") {
			t.Errorf("Load(%q) = %v, want ErrInvalid naming %s:1: trust_domain", content, err, path)
		}
	}
}

// FuzzParse checks that no configuration file makes the loader panic, and
// that every rejection names the file.
func FuzzParse(f *testing.F) {
	f.Add([]byte("trust_domain: a.b\nttl:\n  default: 1m\n  max: 2m\n"))
	f.Add([]byte("listen: [\n"))
	f.Add([]byte("api_names: [a, 1.2.3.4]\nlog: {level: debug}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := config.Parse("fuzz.yaml", data)
		if err != nil && !strings.Contains(err.Error(), "fuzz.yaml") {
			t.Fatalf("Parse error %q does not name the file", err)
		}
	})
}

// TestReadmeExampleParses keeps the configuration shown in the README valid.
func TestReadmeExampleParses(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "ward serve --config ward.yaml` reads:\n\n```yaml\n")
	if !ok {
		t.Fatal("README has no configuration example")
	}
	example, _, _ := strings.Cut(rest, "```")
	if _, err := config.Parse("README.md", []byte(example)); err != nil {
		t.Errorf("README configuration example: %v", err)
	}
}
