package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/api"
)

// errStopped ends watch when Close is called.
var errStopped = errors.New("vault client closed")

// run keeps the Client logged in until Close: it logs in (with backoff
// while that fails), renews the token with a LifetimeWatcher, and logs in
// again when the token cannot be renewed any more.
func (c *Client) run() {
	defer close(c.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-c.stop
		cancel()
	}()

	wait := c.minWait
	for {
		c.mu.Lock()
		state := c.token
		c.mu.Unlock()

		if !state.loggedIn {
			err := c.login(ctx)
			if err == nil {
				wait = c.minWait
				continue
			}
			c.log.Warn("vault login failed", "backend", c.backend, "error", err, "retry_in", wait)
			if !c.sleep(wait) {
				return
			}
			wait = min(2*wait, c.maxWait)
			continue
		}

		settled, err := c.keepAlive(state)
		if settled {
			wait = c.minWait
		}
		switch {
		case errors.Is(err, errStopped):
			return

		case errors.Is(err, ErrUnavailable):
			// Vault is unreachable: keep the token and try renewing
			// again, unless it has expired meanwhile.
			c.log.Warn("vault token renewal failed", "backend", c.backend, "error", err, "retry_in", wait)
			if !c.sleep(wait) {
				return
			}
			wait = min(2*wait, c.maxWait)
			c.expireIfPast()
			continue

		case err != nil:
			c.log.Warn("vault rejected token renewal, logging in again", "backend", c.backend, "error", err)
		default:
			c.log.Info("vault token reached the end of its renewals, logging in again", "backend", c.backend)
		}

		// A fresh token whose renewal is refused at once would make every
		// loop a new login, so back off until a renewal succeeds. The old
		// token stays in use meanwhile, as it is valid until it expires.
		if !settled {
			if !c.sleep(wait) {
				return
			}
			wait = min(2*wait, c.maxWait)
		}
		if err := c.login(ctx); err != nil {
			c.log.Warn("vault login failed", "backend", c.backend, "error", err)
			c.expireIfPast()
		}
	}
}

// expireIfPast marks the Client logged out when its token has expired.
// It reads the token's current expiry, which renewals may have moved
// since the loop took its snapshot.
func (c *Client) expireIfPast() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp := c.token.expiresAt; !exp.IsZero() && !c.now().Before(exp) {
		c.token.loggedIn = false
	}
}

// keepAlive renews the token until it can no longer be renewed. It
// returns nil when the token is close to its end, a refusal or
// *UnavailableError from a failed renewal, or errStopped. settled reports
// that the token lived out a normal lifetime: at least one renewal
// succeeded, or the token was not renewable and was used until near its
// end.
func (c *Client) keepAlive(state tokenState) (settled bool, err error) {
	switch {
	case state.expiresAt.IsZero():
		// A token without TTL, such as a root token, needs no renewal.
		return c.waitWithoutRenewal(nil)

	case !state.renewable:
		// LifetimeWatcher gives up at once on a non-renewable token when
		// it reports errors, so wait for the last tenth of the TTL here.
		t := time.NewTimer(state.expiresAt.Sub(c.now()) * 9 / 10)
		defer t.Stop()
		return c.waitWithoutRenewal(t.C)
	}

	w, err := c.api.NewLifetimeWatcher(&api.LifetimeWatcherInput{
		Secret:        state.auth,
		Increment:     state.auth.Auth.LeaseDuration,
		RenewBehavior: api.RenewBehaviorErrorOnErrors,
	})
	if err != nil {
		return false, err
	}
	go w.Start()
	defer w.Stop()

	for {
		select {
		case <-c.stop:
			return settled, errStopped
		case <-c.denied:
			// A 403 means either a policy without this path, which a new
			// login would not change, or a revoked token.
			if err := c.checkToken(); err != nil {
				return true, err
			}
		case err := <-w.DoneCh():
			return settled, c.classify(err)
		case out := <-w.RenewCh():
			if out.Secret != nil && out.Secret.Auth != nil {
				settled = true
				c.renewed(out.Secret.Auth.LeaseDuration, state.auth.Auth.LeaseDuration)
				c.log.Debug("vault token renewed", "backend", c.backend,
					"ttl", time.Duration(out.Secret.Auth.LeaseDuration)*time.Second)
			}
		}
	}
}

// waitWithoutRenewal waits for end, Close, or a 403 that turns out to
// mean the token was revoked. A nil end never fires.
func (c *Client) waitWithoutRenewal(end <-chan time.Time) (settled bool, err error) {
	for {
		select {
		case <-end:
			return true, nil
		case <-c.stop:
			return false, errStopped
		case <-c.denied:
			if err := c.checkToken(); err != nil {
				return true, err
			}
		}
	}
}

// checkToken looks up the current token and returns an error when Vault
// rejects it.
func (c *Client) checkToken() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	_, err := c.api.Auth().Token().LookupSelfWithContext(ctx)
	var respErr *api.ResponseError
	if errors.As(err, &respErr) && respErr.StatusCode == http.StatusForbidden {
		return fmt.Errorf("token rejected by lookup-self: %w", ErrDenied)
	}
	return nil
}

func (c *Client) markLoggedOut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token.loggedIn = false
}

// sleep waits for d or Close and reports whether d passed.
func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.stop:
		return false
	}
}
