package server

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"time"

	"ward.dev/ward/crypto/hsm"
	"ward.dev/ward/crypto/kek"
	"ward.dev/ward/crypto/kek/vaulttransit"
	"ward.dev/ward/crypto/keyset"
	"ward.dev/ward/crypto/secret"
	"ward.dev/ward/internal/config"
)

// ErrSealed means the key-encryption key or the CA key is unreachable, so
// the server holds no usable key material and issues nothing.
var ErrSealed = errors.New("sealed")

// backends are the key providers chosen in the configuration.
type backends struct {
	hsm      *hsm.HSM      // nil unless kek.type or ca.backend is pkcs11
	kek      kek.KEK       // nil for a local KEK, which openKeys opens or creates
	caSigner crypto.Signer // nil for a local CA key sealed in the data directory
}

// openBackends connects to the HSM or Vault as configured. An unreachable
// provider returns an error wrapping ErrSealed.
func openBackends(cfg config.Config) (*backends, error) {
	b := &backends{}
	if cfg.KEK.Type == "pkcs11" || cfg.CA.Backend == "pkcs11" {
		h, err := openHSM(cfg.HSM)
		if err != nil {
			return nil, sealedErr(err)
		}
		b.hsm = h
	}

	switch cfg.KEK.Type {
	case "pkcs11":
		k, err := b.hsm.KEK(hsm.KeyRef{Label: labelOr(cfg.HSM.KEKLabel, hsm.DefaultKEKLabel)})
		if err != nil {
			b.close()
			return nil, sealedErr(err)
		}
		b.kek = k
	case "vault-transit":
		v := cfg.KEK.Vault
		token, err := resolveSecret(v.Token)
		if err != nil {
			return nil, fmt.Errorf("kek.vault.token: %w", err)
		}
		k, err := vaulttransit.New(vaulttransit.Config{Address: v.Address, Token: token, Mount: v.Mount, Key: v.Key, CACert: v.CACert})
		if err != nil {
			return nil, err
		}
		b.kek = k
	}

	if cfg.CA.Backend == "pkcs11" {
		signer, err := b.hsm.Signer(hsm.KeyRef{Label: labelOr(cfg.HSM.CALabel, hsm.DefaultCALabel)})
		if err != nil {
			b.close()
			return nil, sealedErr(err)
		}
		b.caSigner = signer
	}
	return b, nil
}

func openHSM(c config.HSM) (*hsm.HSM, error) {
	var (
		pin secret.Bytes
		err error
	)
	if c.PINFile != "" {
		pin, err = hsm.PINFromFile(c.PINFile)
	} else {
		pin, err = hsm.PINFromEnv(c.PINEnv)
	}
	if err != nil {
		return nil, fmt.Errorf("hsm PIN: %w", err)
	}
	return hsm.Open(hsm.Config{Module: c.Module, TokenLabel: c.TokenLabel, PIN: pin, Sessions: c.Sessions})
}

func (b *backends) close() {
	if b != nil && b.hsm != nil {
		b.hsm.Close()
	}
}

// sealedErr marks a provider failure as sealed when the provider reports
// itself unreachable. Other failures (a wrong PIN, a missing key) stay
// plain errors, because waiting will not fix them.
func sealedErr(err error) error {
	if errors.Is(err, kek.ErrSealed) {
		return fmt.Errorf("%w: %w", ErrSealed, err)
	}
	return err
}

func labelOr(label, def string) string {
	if label == "" {
		return def
	}
	return label
}

func resolveSecret(ref config.SecretRef) (secret.Bytes, error) {
	if ref.File != "" {
		return hsm.PINFromFile(ref.File)
	}
	return hsm.PINFromEnv(ref.Env)
}

// watchKEK probes the KEK every interval while the server runs. When the
// provider reports itself unreachable, the server seals: credential
// operations return 503 rather than issue from key material still held in
// memory. It unseals when a probe succeeds again.
func (s *Server) watchKEK(ctx context.Context, k kek.KEK, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		_, err := k.Encrypt([]byte("ward-probe"), []byte("ward-probe"))
		switch {
		case err != nil && s.sealedReason() == "":
			s.log.Error("key-encryption key probe failed", "error", err)
			s.seal(providerName(s.cfg) + " unreachable")
		case err == nil && s.sealedReason() != "":
			s.unseal()
		}
	}
}

func (s *Server) seal(reason string) {
	s.sealed.Store(&reason)
	s.log.Error("ward sealed: no credential is issued until the key provider returns", "reason", reason)
}

func (s *Server) unseal() {
	s.sealed.Store(nil)
	s.log.Info("ward unsealed: key provider reachable again")
}

// sealedReason returns why the server is sealed, or "" when it is not.
func (s *Server) sealedReason() string {
	if p := s.sealed.Load(); p != nil {
		return *p
	}
	return ""
}

// signFailure maps a signing error to the API: an unreachable HSM gives 503
// sealed, and anything else is an internal error.
func signFailure(what string, err error) *apiError {
	if errors.Is(err, kek.ErrSealed) {
		return unavailable("sealed: "+what+" failed because the HSM is unavailable", err)
	}
	return internal(what, err)
}

// providerName describes the configured KEK provider for messages that
// clients see: its kind and name, never paths or the cause.
func providerName(cfg config.Config) string {
	switch {
	case cfg.KEK.Type == "pkcs11" || cfg.CA.Backend == "pkcs11":
		return fmt.Sprintf("HSM token %q (PKCS#11)", cfg.HSM.TokenLabel)
	case cfg.KEK.Type == "vault-transit":
		return fmt.Sprintf("Vault Transit key %q", cfg.KEK.Vault.Key)
	default:
		return "local key-encryption key"
	}
}

// rotationCheck is how often the server checks its keyset's rotation policy.
const rotationCheck = time.Hour

// rotateKeys checks at every tick and adds a new primary data key whenever the configured age or
// encryption count is reached, until ctx ends. Data sealed under older
// keys stays readable.
func (s *Server) rotateKeys(ctx context.Context, tick <-chan time.Time) {
	r := s.cfg.KEK.Rotation
	policy := keyset.Policy{MaxAge: r.MaxAge.Duration, MaxEncryptions: r.MaxEncryptions}
	s.keyset.AutoRotate(ctx, policy, tick, func(id uint32, err error) {
		if err != nil {
			s.log.Error("keyset rotation failed", "keyset", s.keyset.Path(), "error", err)
			return
		}
		s.log.Info("keyset rotated", "keyset", s.keyset.Path(), "primary_key_id", id)
	})
}
