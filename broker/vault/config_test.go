package vault

import (
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestConfigDecodesFromYAML(t *testing.T) {
	const doc = `
address: https://vault.internal:8200
ca_cert: /etc/ward/vault-ca.pem
timeout: 5s
auth:
  method: approle
  role_id: 0d5f1e7c-ward
  secret_id: {file: /run/secrets/vault-secret-id}
`
	var cfg Config
	if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatalf("yaml.Unmarshal = %v", err)
	}
	if cfg.Timeout != 5*time.Second || cfg.Auth.Method != "approle" || cfg.Auth.SecretID.File != "/run/secrets/vault-secret-id" {
		t.Errorf("decoded config = %+v, want the document's values", cfg)
	}
	if err := cfg.validate(); err != nil {
		t.Errorf("validate() of the documented example = %v, want nil", err)
	}
}
