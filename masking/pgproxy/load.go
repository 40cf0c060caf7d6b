package pgproxy

import (
	"crypto/rand"
	"fmt"
	"log/slog"

	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/transform"
)

// Load reads what cfg names (the masking rules, the masking key, the static
// logins and the upstream password) and returns the Options for New with
// decider as the authorization source. The password stays in memory as
// secret.Bytes and is not logged. Only a plain masking key file is read;
// "ward serve" passes its own key, sealed by its keyset, to LoadWithKeys.
func Load(cfg *Config, decider Decider, logger *slog.Logger) (Options, error) {
	var keys *transform.Keys
	if cfg.MaskingKeyFile != "" {
		var err error
		if keys, err = transform.LoadKeyFile(cfg.MaskingKeyFile, nil); err != nil {
			return Options{}, fmt.Errorf("%w: %s: %v", ErrConfig, cfg.Where("masking_key_file"), err)
		}
	}
	return LoadWithKeys(cfg, decider, logger, keys)
}

// LoadWithKeys is Load with the masking key given, for rules whose
// transformers need one; cfg.MaskingKeyFile is not read.
func LoadWithKeys(cfg *Config, decider Decider, logger *slog.Logger, keys *transform.Keys) (Options, error) {
	rs, err := rules.Load(cfg.Rules)
	if err != nil {
		return Options{}, fmt.Errorf("%w: %s: %v", ErrConfig, cfg.Where("rules"), err)
	}
	plan, err := rules.Compile(rs, nil, keys)
	if err != nil {
		return Options{}, err
	}

	password, err := cfg.Upstream.Password.Resolve()
	if err != nil {
		return Options{}, fmt.Errorf("%w: %s: %v", ErrConfig, cfg.Where("upstream.password"), err)
	}

	logins := NewMemoryLogins()
	for i, l := range cfg.Logins {
		pw, err := l.Password.Resolve()
		if err != nil {
			return Options{}, fmt.Errorf("%w: %s (%s): %v", ErrConfig, cfg.Where(fmt.Sprintf("logins.%d.password", i)), l.User, err)
		}
		raw := pw.Reveal()
		v, err := NewVerifier(raw, rand.Reader, DefaultSCRAMIterations)
		clear(raw)
		if err != nil {
			return Options{}, err
		}
		logins.Put(l.User, Login{SPIFFEID: l.SPIFFEID, Verifier: v})
	}

	return Options{
		Config: cfg, Authz: decider, Logins: logins, Rules: plan,
		UpstreamPassword: password, Logger: logger,
	}, nil
}
