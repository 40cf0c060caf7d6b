package pgcred

import (
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestRoleDecodesFromYAML(t *testing.T) {
	const doc = `
- name: shop-readonly
  dsn: postgres://ward_admin@db.internal:5432/shop?sslmode=verify-full
  password: {env: WARD_SHOP_ADMIN_PASSWORD}
  creation: |
    CREATE ROLE {{.Username}} LOGIN PASSWORD {{.Password}} VALID UNTIL {{.Expiration}};
    GRANT SELECT ON products TO {{.Username}};
  default_ttl: 1h
  max_ttl: 24h
`
	var roles []Role
	if err := yaml.Unmarshal([]byte(doc), &roles); err != nil {
		t.Fatalf("yaml.Unmarshal = %v", err)
	}
	if len(roles) != 1 {
		t.Fatalf("decoded %d roles, want 1", len(roles))
	}
	r := roles[0]
	if r.Name != "shop-readonly" || r.Password.Env != "WARD_SHOP_ADMIN_PASSWORD" || r.DefaultTTL != time.Hour || r.MaxTTL != 24*time.Hour {
		t.Errorf("decoded role = %+v, want the document's values", r)
	}
	if _, err := r.validate(); err != nil {
		t.Errorf("validate() of the documented example = %v, want nil", err)
	}
}
