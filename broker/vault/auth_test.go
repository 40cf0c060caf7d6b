package vault_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/broker/vault"
	"ward.dev/ward/broker/vault/vaulttest"
)

func TestBadTokenDenied(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		_, err := vault.New(context.Background(), vault.Config{
			Address: tg.addr,
			Auth:    vault.Auth{Method: "token", Token: tokenFile(t, "hvs.not-a-token")},
		}, vault.Options{})
		if !errors.Is(err, vault.ErrDenied) {
			t.Errorf("New with an unknown token = %v, want ErrDenied", err)
		}
	})
}

func TestRevokedTokenDenied(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		tg.standinOnly(t)
		tok := tg.stand.NewToken(vaulttest.TokenOptions{})
		c := tg.newClientWith(t, vault.Auth{Method: "token", Token: tokenFile(t, tok)}, vault.Options{})
		tg.putKV(t, "kvtest", "denied", map[string]any{"k": "v"})

		tg.stand.RevokeToken(tok)
		_, _, err := vault.NewIssuer(c).Issue(context.Background(), "kv/kvtest/denied", "s", time.Time{})
		if !errors.Is(err, vault.ErrDenied) {
			t.Errorf("Issue with a revoked token = %v, want ErrDenied", err)
		}
	})
}

func TestRevokedTokenTriggersLogin(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		tg.standinOnly(t)
		roleID, secretID := tg.appRole(t, time.Hour)
		t.Setenv("WARD_TEST_SECRET_ID", secretID)
		c := tg.newClientWith(t, vault.Auth{Method: "approle", RoleID: roleID, SecretID: vault.SecretRef{Env: "WARD_TEST_SECRET_ID"}}, vault.Options{})
		tg.putKV(t, "kvtest", "revoked", map[string]any{"k": "v"})
		iss := vault.NewIssuer(c)

		tg.stand.RevokeToken(c.API().Token())
		if _, _, err := iss.Issue(context.Background(), "kv/kvtest/revoked", "s", time.Time{}); !errors.Is(err, vault.ErrDenied) {
			t.Fatalf("Issue with a revoked token = %v, want ErrDenied", err)
		}
		waitFor(t, 10*time.Second, "a working token after the 403", func() bool {
			_, _, err := iss.Issue(context.Background(), "kv/kvtest/revoked", "s", time.Time{})
			return err == nil
		})
	})
}

func TestAppRoleRenewsItsToken(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		tg.standinOnly(t)
		roleID, secretID := tg.appRole(t, 2*time.Second)
		t.Setenv("WARD_TEST_SECRET_ID", secretID)
		c := tg.newClientWith(t, vault.Auth{Method: "approle", RoleID: roleID, SecretID: vault.SecretRef{Env: "WARD_TEST_SECRET_ID"}}, vault.Options{})

		first, ok := c.TokenExpiry()
		if !ok || first.IsZero() {
			t.Fatalf("TokenExpiry() = %v, %v; want a logged-in token with a TTL", first, ok)
		}
		waitFor(t, 10*time.Second, "a renew-self request", func() bool {
			return tg.stand.Requests("PUT", "/v1/auth/token/renew-self") > 0
		})
		waitFor(t, 2*time.Second, "a later token expiry", func() bool {
			exp, _ := c.TokenExpiry()
			return exp.After(first)
		})
		if n := tg.stand.Requests("POST", "/v1/auth/approle/login") + tg.stand.Requests("PUT", "/v1/auth/approle/login"); n != 1 {
			t.Errorf("AppRole logins = %d, want 1 while renewal works", n)
		}
	})
}

func TestReauthWhenRenewalRefused(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		tg.standinOnly(t)
		roleID, secretID := tg.appRole(t, 2*time.Second)
		t.Setenv("WARD_TEST_SECRET_ID", secretID)
		c := tg.newClientWith(t, vault.Auth{Method: "approle", RoleID: roleID, SecretID: vault.SecretRef{Env: "WARD_TEST_SECRET_ID"}}, vault.Options{})
		tg.putKV(t, "kvtest", "reauth", map[string]any{"k": "v"})

		tg.stand.RefuseTokenRenewal(true)
		logins := func() int {
			return tg.stand.Requests("POST", "/v1/auth/approle/login") + tg.stand.Requests("PUT", "/v1/auth/approle/login")
		}
		waitFor(t, 10*time.Second, "a second AppRole login", func() bool { return logins() >= 2 })
		waitFor(t, 2*time.Second, "the new token in use", func() bool {
			_, ok := c.TokenExpiry()
			return ok
		})

		if _, _, err := vault.NewIssuer(c).Issue(context.Background(), "kv/kvtest/reauth", "s", time.Time{}); err != nil {
			t.Errorf("Issue after re-authentication = %v, want nil", err)
		}
	})
}

func TestKubernetesLogin(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		tg.standinOnly(t)
		jwtFile := t.TempDir() + "/token"
		if err := os.WriteFile(jwtFile, []byte("eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		tg.stand.AddKubernetesRole("ward", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
		c := tg.newClientWith(t, vault.Auth{Method: "kubernetes", Role: "ward", JWTFile: jwtFile}, vault.Options{})
		if _, ok := c.TokenExpiry(); !ok {
			t.Error("TokenExpiry() reports not logged in after Kubernetes login")
		}

		tg.stand.AddKubernetesRole("other", "different-jwt")
		_, err := vault.New(context.Background(), vault.Config{Address: tg.addr, Auth: vault.Auth{Method: "kubernetes", Role: "other", JWTFile: jwtFile}}, vault.Options{})
		if !errors.Is(err, vault.ErrDenied) {
			t.Errorf("Kubernetes login with a wrong JWT = %v, want ErrDenied", err)
		}
	})
}

func TestLoginRecoversAfterOutage(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		tg.standinOnly(t)
		roleID, secretID := tg.appRole(t, time.Hour)
		t.Setenv("WARD_TEST_SECRET_ID", secretID)
		tg.putKV(t, "kvtest", "outage", map[string]any{"k": "v"})

		tg.stand.Seal()
		c := tg.newClientWith(t, vault.Auth{Method: "approle", RoleID: roleID, SecretID: vault.SecretRef{Env: "WARD_TEST_SECRET_ID"}}, vault.Options{})
		iss := vault.NewIssuer(c)
		if _, _, err := iss.Issue(context.Background(), "kv/kvtest/outage", "s", time.Time{}); !errors.Is(err, vault.ErrUnavailable) {
			t.Errorf("Issue before the first login = %v, want ErrUnavailable", err)
		}

		tg.stand.Unseal()
		waitFor(t, 5*time.Second, "the background login", func() bool {
			_, ok := c.TokenExpiry()
			return ok
		})
		if _, _, err := iss.Issue(context.Background(), "kv/kvtest/outage", "s", time.Time{}); err != nil {
			t.Errorf("Issue after recovery = %v, want nil", err)
		}
	})
}

func TestTokenEndingBeforeLeaseWarns(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		tg.standinOnly(t)
		var logs logBuffer
		tok := tg.stand.NewToken(vaulttest.TokenOptions{TTL: time.Minute, Renewable: false})
		c := tg.newClientWith(t, vault.Auth{Method: "token", Token: tokenFile(t, tok)}, vault.Options{Logger: logs.logger()})
		path := tg.databaseRole(t, "long", time.Hour, 2*time.Hour)

		if _, _, err := vault.NewIssuer(c).Issue(context.Background(), path, "s", time.Time{}); err != nil {
			t.Fatalf("Issue = %v", err)
		}
		if !strings.Contains(logs.String(), "vault token expires before a lease it holds") {
			t.Errorf("log lacks the token-expiry warning:\n%s", logs.String())
		}
	})
}

func TestConfigValidation(t *testing.T) {
	token := vault.SecretRef{Env: "X"}
	tests := []struct {
		name string
		cfg  vault.Config
		want string
	}{
		{"plain http remote", vault.Config{Address: "http://vault.example:8200", Auth: vault.Auth{Method: "token", Token: token}}, "plain http"},
		{"bad scheme", vault.Config{Address: "ftp://127.0.0.1", Auth: vault.Auth{Method: "token", Token: token}}, "scheme"},
		{"no address", vault.Config{Auth: vault.Auth{Method: "token", Token: token}}, "invalid"},
		{"unknown method", vault.Config{Address: "https://v:8200", Auth: vault.Auth{Method: "ldap"}}, "auth method"},
		{"approle without secret", vault.Config{Address: "https://v:8200", Auth: vault.Auth{Method: "approle", RoleID: "r"}}, "secret_id"},
		{"token without ref", vault.Config{Address: "https://v:8200", Auth: vault.Auth{Method: "token"}}, "token.env"},
		{"kubernetes without role", vault.Config{Address: "https://v:8200", Auth: vault.Auth{Method: "kubernetes"}}, "role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := vault.New(context.Background(), tt.cfg, vault.Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestRenewalRetriesThroughOutage(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		tg.standinOnly(t)
		roleID, secretID := tg.appRole(t, 3*time.Second)
		t.Setenv("WARD_TEST_SECRET_ID", secretID)
		c := tg.newClientWith(t, vault.Auth{Method: "approle", RoleID: roleID, SecretID: vault.SecretRef{Env: "WARD_TEST_SECRET_ID"}}, vault.Options{})
		renewals := func() int { return tg.stand.Requests("PUT", "/v1/auth/token/renew-self") }
		waitFor(t, 5*time.Second, "the first renewal", func() bool { return renewals() >= 1 })

		tg.stand.Seal()
		before := renewals()
		waitFor(t, 5*time.Second, "two renewal attempts while sealed", func() bool { return renewals() >= before+2 })
		tg.stand.Unseal()

		sealedAt, _ := c.TokenExpiry()
		waitFor(t, 5*time.Second, "a successful renewal after unsealing", func() bool {
			exp, ok := c.TokenExpiry()
			return ok && exp.After(sealedAt)
		})
		if n := tg.stand.Requests("PUT", "/v1/auth/approle/login"); n != 1 {
			t.Errorf("AppRole logins = %d, want 1: the token outlived the outage", n)
		}
	})
}

func TestReloginWarnsAboutHeldLeases(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		tg.standinOnly(t)
		var logs logBuffer
		roleID, secretID := tg.appRole(t, 2*time.Second)
		t.Setenv("WARD_TEST_SECRET_ID", secretID)
		c := tg.newClientWith(t, vault.Auth{Method: "approle", RoleID: roleID, SecretID: vault.SecretRef{Env: "WARD_TEST_SECRET_ID"}}, vault.Options{Logger: logs.logger()})
		path := tg.databaseRole(t, "held", time.Hour, 2*time.Hour)
		if _, _, err := vault.NewIssuer(c).Issue(context.Background(), path, "s", time.Time{}); err != nil {
			t.Fatalf("Issue = %v", err)
		}

		tg.stand.RefuseTokenRenewal(true)
		waitFor(t, 10*time.Second, "the warning about leases of the previous token", func() bool {
			return strings.Contains(logs.String(), "leases issued under the previous token end")
		})
	})
}
