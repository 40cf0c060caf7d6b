package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
)

// Options are the dependencies of a Client. Zero values pick defaults.
type Options struct {
	Logger *slog.Logger     // default: discards
	Now    func() time.Time // default: time.Now; used for expiry bookkeeping

	// RetryMin and RetryMax bound the backoff between failed logins and
	// renewals. Defaults 1s and 1m.
	RetryMin, RetryMax time.Duration
}

// tokenState is the Client's record of its current token.
type tokenState struct {
	loggedIn  bool
	expiresAt time.Time // zero: never expires
	renewable bool
	// hardEnd is when the token ends whatever renewals happen: its
	// expiry when not renewable, or issue time plus explicit_max_ttl.
	// Zero when unknown.
	hardEnd time.Time
	auth    *api.Secret // the login result, which the LifetimeWatcher renews
}

// Client is a logged-in Vault client that keeps its token alive. It is
// safe for concurrent use.
type Client struct {
	api     *api.Client
	cfg     Config
	backend string
	log     *slog.Logger
	now     func() time.Time
	minWait time.Duration
	maxWait time.Duration

	mu    sync.Mutex
	token tokenState
	// leaseEnd is the latest expiry of any lease issued or renewed through
	// this Client. Leases revoked since are not subtracted, so warnings
	// based on it can be false alarms.
	leaseEnd time.Time

	// denied receives a signal when Vault returns 403 to a request, so
	// the renewal loop checks whether the token itself was revoked.
	denied chan struct{}

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New creates a Client and logs in. A refused login or an invalid
// configuration is an error. An unreachable or sealed Vault is not: the
// Client keeps trying in the background, and requests fail with
// ErrUnavailable until it succeeds. Call Close to stop the background
// goroutine.
func New(ctx context.Context, cfg Config, opts Options) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	if cfg.Auth.Mount == "" {
		cfg.Auth.Mount = cfg.Auth.Method
	}
	if cfg.Auth.Method == "kubernetes" && cfg.Auth.JWTFile == "" {
		cfg.Auth.JWTFile = DefaultJWTFile
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}

	apiConfig := api.DefaultConfig()
	if apiConfig.Error != nil {
		return nil, fmt.Errorf("vault: client defaults: %w", apiConfig.Error)
	}
	apiConfig.Address = cfg.Address
	apiConfig.Timeout = cfg.Timeout
	// The lease manager retries with its own backoff, and the client's
	// retries would hold a request for seconds on a sealed Vault.
	apiConfig.MaxRetries = 0
	// Insecure false undoes a VAULT_SKIP_VERIFY picked up from the
	// environment by DefaultConfig.
	if err := apiConfig.ConfigureTLS(&api.TLSConfig{CACert: cfg.CACert, Insecure: false}); err != nil {
		return nil, fmt.Errorf("vault: TLS configuration: %w", err)
	}
	apiClient, err := api.NewClient(apiConfig)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	// NewClient picks up VAULT_TOKEN. ward uses only the configured auth.
	apiClient.ClearToken()

	c := &Client{
		api:     apiClient,
		cfg:     cfg,
		backend: "vault " + cfg.Address,
		log:     opts.Logger,
		now:     opts.Now,
		minWait: opts.RetryMin,
		maxWait: opts.RetryMax,
		denied:  make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.minWait <= 0 {
		c.minWait = time.Second
	}
	if c.maxWait < c.minWait {
		c.maxWait = max(time.Minute, c.minWait)
	}

	loginErr := c.login(ctx)
	if loginErr != nil && !errors.Is(loginErr, ErrUnavailable) {
		return nil, loginErr
	}
	if loginErr != nil {
		c.log.Warn("vault login failed, retrying in the background", "backend", c.backend, "error", loginErr)
	}
	go c.run()
	return c, nil
}

// Close stops token renewal. It does not revoke the token, so leases the
// token holds live on until they expire or are revoked.
func (c *Client) Close() {
	c.once.Do(func() {
		close(c.stop)
		<-c.done
	})
}

// TokenExpiry returns when the current token expires (zero: never) and
// whether the Client is logged in.
func (c *Client) TokenExpiry() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token.expiresAt, c.token.loggedIn
}

// API returns the underlying client, for requests this package does not
// wrap. Its token changes on re-authentication.
func (c *Client) API() *api.Client { return c.api }

// login authenticates with the configured method and stores the token.
func (c *Client) login(ctx context.Context) error {
	var (
		authSecret  *api.Secret
		explicitMax time.Duration
		err         error
	)
	switch c.cfg.Auth.Method {
	case "token":
		authSecret, explicitMax, err = c.loginToken(ctx)
	case "approle":
		authSecret, err = c.loginWith(ctx, c.cfg.Auth.SecretID, func(secretID string) map[string]any {
			return map[string]any{"role_id": c.cfg.Auth.RoleID, "secret_id": secretID}
		})
	case "kubernetes":
		authSecret, err = c.loginWith(ctx, SecretRef{File: c.cfg.Auth.JWTFile}, func(jwt string) map[string]any {
			return map[string]any{"role": c.cfg.Auth.Role, "jwt": jwt}
		})
	}
	if err != nil {
		return fmt.Errorf("vault: %s login: %w", c.cfg.Auth.Method, err)
	}
	if authSecret == nil || authSecret.Auth == nil || authSecret.Auth.ClientToken == "" {
		return fmt.Errorf("vault: %s login returned no token", c.cfg.Auth.Method)
	}

	c.api.SetToken(authSecret.Auth.ClientToken)
	ttl := time.Duration(authSecret.Auth.LeaseDuration) * time.Second
	c.mu.Lock()
	now := c.now()
	// Vault revokes a token's leases when the token ends, and the new
	// token does not adopt them.
	if old := c.token; old.auth != nil && !old.expiresAt.IsZero() && old.expiresAt.Before(c.leaseEnd) {
		c.log.Warn("vault token replaced; leases issued under the previous token end when it expires",
			"backend", c.backend, "previous_token_end", old.expiresAt.UTC(), "latest_lease_end", c.leaseEnd.UTC())
	}
	c.token = tokenState{loggedIn: true, renewable: authSecret.Auth.Renewable, auth: authSecret}
	if ttl > 0 {
		c.token.expiresAt = now.Add(ttl)
	}
	switch {
	case explicitMax > 0:
		// Counted from now, not from the token's creation, so it errs
		// on the early side.
		c.token.hardEnd = now.Add(explicitMax)
	case !authSecret.Auth.Renewable:
		c.token.hardEnd = c.token.expiresAt
	}
	c.mu.Unlock()

	c.log.Info("vault login succeeded", "backend", c.backend, "method", c.cfg.Auth.Method,
		"ttl", ttl, "renewable", authSecret.Auth.Renewable)
	return nil
}

// renewed records a token renewal. A renewal shorter than requested means
// the token reached its maximum TTL, so its end is now known.
func (c *Client) renewed(ttlSeconds, requestedSeconds int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token.expiresAt = c.now().Add(time.Duration(ttlSeconds) * time.Second)
	if requestedSeconds > 0 && ttlSeconds < requestedSeconds {
		if c.token.hardEnd.IsZero() && c.token.expiresAt.Before(c.leaseEnd) {
			c.log.Warn("vault token reached its max TTL before leases it holds end, so Vault will revoke them early; use an orphan or periodic token",
				"backend", c.backend, "token_end", c.token.expiresAt.UTC(), "latest_lease_end", c.leaseEnd.UTC())
		}
		c.token.hardEnd = c.token.expiresAt
	}
}

// loginWith posts the credential from ref, shaped by body, to
// auth/<mount>/login.
func (c *Client) loginWith(ctx context.Context, ref SecretRef, body func(string) map[string]any) (*api.Secret, error) {
	cred, err := ref.Resolve()
	if err != nil {
		return nil, err
	}
	raw := cred.Reveal()
	defer clear(raw)

	// The login request must not carry a stale token of this Client.
	loginClient, err := c.api.Clone()
	if err != nil {
		return nil, err
	}
	loginClient.ClearToken()
	s, err := loginClient.Logical().WriteWithContext(ctx, "auth/"+c.cfg.Auth.Mount+"/login", body(string(raw)))
	return s, c.classify(err)
}

// loginToken checks a configured token with lookup-self and returns it as
// an auth secret, so the token method renews like the others, with the
// token's explicit_max_ttl.
func (c *Client) loginToken(ctx context.Context) (*api.Secret, time.Duration, error) {
	tok, err := c.cfg.Auth.Token.Resolve()
	if err != nil {
		return nil, 0, err
	}
	raw := tok.Reveal()
	defer clear(raw)

	lookupClient, err := c.api.Clone()
	if err != nil {
		return nil, 0, err
	}
	lookupClient.SetToken(string(raw))
	self, err := lookupClient.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return nil, 0, c.classify(err)
	}
	if self == nil || self.Data == nil {
		return nil, 0, errors.New("token lookup returned no data")
	}

	ttl, _ := self.TokenTTL()
	renewable, _ := self.TokenIsRenewable()
	authSecret := &api.Secret{Auth: &api.SecretAuth{
		ClientToken:   string(raw),
		LeaseDuration: int(ttl.Seconds()),
		Renewable:     renewable,
	}}
	maxSeconds, _ := numberField(self.Data["explicit_max_ttl"])
	return authSecret, time.Duration(maxSeconds) * time.Second, nil
}

func numberField(v any) (int64, bool) {
	switch x := v.(type) {
	case float64:
		return int64(x), true
	case interface{ Int64() (int64, error) }:
		n, err := x.Int64()
		return n, err == nil
	}
	return 0, false
}

// warnIfTokenEndsFirst logs when the token cannot outlive a lease it
// holds, because Vault revokes the lease when the token ends, earlier than
// ward's lease record expects.
func (c *Client) warnIfTokenEndsFirst(ctx context.Context, leaseID string, leaseEnd time.Time) {
	c.mu.Lock()
	hardEnd := c.token.hardEnd
	if leaseEnd.After(c.leaseEnd) {
		c.leaseEnd = leaseEnd
	}
	c.mu.Unlock()

	if !hardEnd.IsZero() && hardEnd.Before(leaseEnd) {
		c.log.WarnContext(ctx, "vault token expires before a lease it holds, so Vault will revoke the lease early; use an orphan or periodic token",
			"backend", c.backend, "lease_id", leaseID,
			"token_end", hardEnd.UTC(), "lease_end", leaseEnd.UTC())
	}
}

// classify wraps connection failures and 429, 5xx and sealed responses in
// *UnavailableError, 403 in ErrDenied and 404 in ErrNotFound.
func (c *Client) classify(err error) error {
	if err == nil {
		return nil
	}
	var respErr *api.ResponseError
	if errors.As(err, &respErr) {
		switch {
		case respErr.StatusCode == http.StatusForbidden:
			select {
			case c.denied <- struct{}{}:
			default:
			}
			return fmt.Errorf("%w: %v", ErrDenied, err)
		case respErr.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%w: %v", ErrNotFound, err)
		case respErr.StatusCode == http.StatusTooManyRequests || respErr.StatusCode >= 500:
			return &UnavailableError{Backend: c.backend, Err: err}
		}
		return err
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	// Anything else failed before Vault answered: refused connection,
	// DNS, TLS handshake or timeout.
	return &UnavailableError{Backend: c.backend, Err: err}
}
