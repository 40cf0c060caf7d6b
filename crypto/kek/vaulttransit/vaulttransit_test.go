package vaulttransit_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ward.dev/ward/crypto/kek"
	"ward.dev/ward/crypto/kek/vaulttransit"
	"ward.dev/ward/crypto/keyset"
	"ward.dev/ward/crypto/secret"
)

const standInToken = "hvs.test-token-9f3k"

func newStandInKEK(t *testing.T) (*transitStandIn, *vaulttransit.KEK) {
	t.Helper()
	s, srv := newTransitStandIn(t, standInToken, "transit", "ward-kek")
	k, err := vaulttransit.New(vaulttransit.Config{
		Address: srv.URL, Token: secret.New([]byte(standInToken)), Key: "ward-kek",
	})
	if err != nil {
		t.Fatalf("New error: %v", err)
	}
	return s, k
}

func TestRoundTrip(t *testing.T) {
	_, k := newStandInKEK(t)
	ct, err := k.Encrypt([]byte("serialized keyset"), []byte("keyset.bin"))
	if err != nil {
		t.Fatalf("Encrypt error: %v", err)
	}
	if !bytes.HasPrefix(ct, []byte("vault:v1:")) {
		t.Errorf("Encrypt = %q, want Vault's vault:v1: format", ct)
	}
	pt, err := k.Decrypt(ct, []byte("keyset.bin"))
	if err != nil || string(pt) != "serialized keyset" {
		t.Errorf("Decrypt = %q, %v, want %q", pt, err, "serialized keyset")
	}
}

func TestDecryptRejects(t *testing.T) {
	_, k := newStandInKEK(t)
	ct, err := k.Encrypt([]byte("serialized keyset"), []byte("keyset.bin"))
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(ct)
	flipped[len(flipped)-3] ^= 1

	tests := []struct {
		name string
		ct   []byte
		aad  []byte
	}{
		{"wrong associated data", ct, []byte("other.bin")},
		{"flipped bit", flipped, []byte("keyset.bin")},
		{"truncated", ct[:len(ct)-8], []byte("keyset.bin")},
		{"no prefix", ct[len("vault:v1:"):], []byte("keyset.bin")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := k.Decrypt(tt.ct, tt.aad)
			if err == nil {
				t.Fatalf("Decrypt(%s) error = nil, want an error", tt.name)
			}
			if errors.Is(err, kek.ErrSealed) {
				t.Errorf("Decrypt(%s) error = %v, want an input error, not kek.ErrSealed", tt.name, err)
			}
		})
	}
}

func TestVaultErrors(t *testing.T) {
	s, srv := newTransitStandIn(t, standInToken, "transit", "ward-kek")
	good, err := vaulttransit.New(vaulttransit.Config{Address: srv.URL, Token: secret.New([]byte(standInToken)), Key: "ward-kek"})
	if err != nil {
		t.Fatal(err)
	}
	ct, err := good.Encrypt([]byte("keyset"), nil)
	if err != nil {
		t.Fatal(err)
	}
	badToken, err := vaulttransit.New(vaulttransit.Config{Address: srv.URL, Token: secret.New([]byte("hvs.wrong-token")), Key: "ward-kek"})
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := vaulttransit.New(vaulttransit.Config{Address: srv.URL, Token: secret.New([]byte(standInToken)), Key: "missing"})
	if err != nil {
		t.Fatal(err)
	}

	// A listener that is closed at once gives an address nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := "http://" + ln.Addr().String()
	ln.Close()
	down, err := vaulttransit.New(vaulttransit.Config{Address: deadAddr, Token: secret.New([]byte(standInToken)), Key: "ward-kek"})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		kek      *vaulttransit.KEK
		sealed   bool
		want     error
		contains string
	}{
		{"bad token", badToken, false, vaulttransit.ErrDenied, "permission denied"},
		{"sealed", good, true, kek.ErrSealed, "Vault is sealed"},
		{"unknown key", otherKey, false, nil, "404"},
		{"connection refused", down, false, kek.ErrSealed, "unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.sealed.Store(tt.sealed)
			defer s.sealed.Store(false)

			for op, call := range map[string]func() error{
				"Encrypt": func() error { _, err := tt.kek.Encrypt([]byte("keyset"), nil); return err },
				"Decrypt": func() error { _, err := tt.kek.Decrypt(ct, nil); return err },
			} {
				err := call()
				if err == nil {
					t.Fatalf("%s(%s) error = nil, want an error", op, tt.name)
				}
				if tt.want != nil && !errors.Is(err, tt.want) {
					t.Errorf("%s(%s) error = %v, want %v", op, tt.name, err, tt.want)
				}
				if tt.want == nil && errors.Is(err, kek.ErrSealed) {
					t.Errorf("%s(%s) error = %v, want no kek.ErrSealed", op, tt.name, err)
				}
				if !strings.Contains(err.Error(), tt.contains) {
					t.Errorf("%s(%s) error = %q, want it to contain %q", op, tt.name, err, tt.contains)
				}
				if strings.Contains(err.Error(), "hvs.") {
					t.Errorf("%s(%s) error contains a token: %v", op, tt.name, err)
				}
			}
		})
	}
}

func TestKeysetSealedByVault(t *testing.T) {
	s, k := newStandInKEK(t)
	path := filepath.Join(t.TempDir(), "keyset.bin")
	ks, err := keyset.Create(path, k)
	if err != nil {
		t.Fatalf("keyset.Create with the Vault KEK error: %v", err)
	}
	ct, err := ks.Encrypt([]byte("JWT key"), nil)
	if err != nil {
		t.Fatal(err)
	}

	s.sealed.Store(true)
	if _, err := keyset.Open(path, k); !errors.Is(err, kek.ErrSealed) {
		t.Errorf("keyset.Open with Vault sealed error = %v, want kek.ErrSealed", err)
	}
	s.sealed.Store(false)

	reopened, err := keyset.Open(path, k)
	if err != nil {
		t.Fatalf("keyset.Open after unsealing error: %v", err)
	}
	if pt, err := reopened.Decrypt(ct, nil); err != nil || string(pt) != "JWT key" {
		t.Errorf("Decrypt = %q, %v, want %q", pt, err, "JWT key")
	}
}

func TestEnvironmentIgnored(t *testing.T) {
	s, srv := newTransitStandIn(t, standInToken, "transit", "ward-kek")
	t.Setenv("VAULT_TOKEN", "hvs.from-environment")
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	t.Setenv("VAULT_NAMESPACE", "elsewhere")

	k, err := vaulttransit.New(vaulttransit.Config{Address: srv.URL, Token: secret.New([]byte(standInToken)), Key: "ward-kek"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Encrypt([]byte("keyset"), nil); err != nil {
		t.Errorf("Encrypt with VAULT_* variables set error = %v, want the configured address and token used", err)
	}
	if s.calls.Load() != 1 {
		t.Errorf("stand-in received %d calls, want 1", s.calls.Load())
	}
}

func TestNewRejectsConfig(t *testing.T) {
	token := secret.New([]byte(standInToken))
	tests := []struct {
		name string
		cfg  vaulttransit.Config
	}{
		{"missing address", vaulttransit.Config{Token: token, Key: "k"}},
		{"missing token", vaulttransit.Config{Address: "http://127.0.0.1:1", Key: "k"}},
		{"missing key", vaulttransit.Config{Address: "http://127.0.0.1:1", Token: token}},
		{"key with slash", vaulttransit.Config{Address: "http://127.0.0.1:1", Token: token, Key: "a/b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := vaulttransit.New(tt.cfg); err == nil {
				t.Errorf("New(%s) error = nil, want an error", tt.name)
			}
		})
	}
}

// TestRealVault runs against the Vault at VAULT_ADDR with VAULT_TOKEN, when
// both are set and the address is on loopback. It mounts Transit at a random
// path, creates an aes256-gcm96 key and removes the mount afterwards.
func TestRealVault(t *testing.T) {
	addr, token := os.Getenv("VAULT_ADDR"), os.Getenv("VAULT_TOKEN")
	if addr == "" || token == "" {
		t.Skip("VAULT_ADDR and VAULT_TOKEN not set")
	}
	u, err := url.Parse(addr)
	if err != nil {
		t.Fatalf("VAULT_ADDR %q: %v", addr, err)
	}
	if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		t.Skipf("VAULT_ADDR %s is not on loopback; this test only talks to a local Vault", addr)
	}

	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	mount := "ward-test-" + hex.EncodeToString(suffix)
	vault := func(method, path, body string) {
		t.Helper()
		req, err := http.NewRequest(method, strings.TrimRight(addr, "/")+"/v1/"+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Vault-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("%s %s: HTTP %d", method, path, resp.StatusCode)
		}
	}
	vault(http.MethodPost, "sys/mounts/"+mount, `{"type":"transit"}`)
	t.Cleanup(func() { vault(http.MethodDelete, "sys/mounts/"+mount, "") })
	vault(http.MethodPost, mount+"/keys/ward-kek", `{"type":"aes256-gcm96"}`)

	k, err := vaulttransit.New(vaulttransit.Config{Address: addr, Token: secret.New([]byte(token)), Mount: mount, Key: "ward-kek"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "keyset.bin")
	ks, err := keyset.Create(path, k)
	if err != nil {
		t.Fatalf("keyset.Create with real Vault error: %v", err)
	}
	ct, err := ks.Encrypt([]byte("data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	reopened, err := keyset.Open(path, k)
	if err != nil {
		t.Fatalf("keyset.Open with real Vault error: %v", err)
	}
	if pt, err := reopened.Decrypt(ct, nil); err != nil || string(pt) != "data" {
		t.Errorf("Decrypt = %q, %v, want %q", pt, err, "data")
	}
	sealed, err := k.Encrypt([]byte("keyset"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Decrypt(sealed, []byte("other aad")); err == nil {
		t.Errorf("real Vault Decrypt with wrong associated data error = nil, want an error")
	}
}
