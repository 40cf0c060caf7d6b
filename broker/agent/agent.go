// Package agent is ward's sidecar. It authenticates a workload to the ward
// broker and fetches the credentials its configuration lists (X.509-SVIDs
// with their trust bundle, JWT-SVIDs, database logins, Vault secrets). It
// writes them and rendered templates into a directory, renews each at half
// its lifetime, and notifies the application. It also serves them over the
// SPIFFE Workload API and Envoy SDS on Unix sockets.
//
// Security contract: files are replaced atomically (temporary file, then
// rename) with mode 0600 for keys and tokens and 0640 for certificates
// unless configured; the agent talks to the broker over TLS 1.3 and trusts
// only the configured CA; credential values, keys and tokens never reach a
// log, which carries names, lease ids and expiry times; a credential past
// its expiry is no longer served; the Workload API answers only requests
// with the `workload.spiffe.io: true` metadata header. Any process that can
// open the sockets is treated as the workload, so their directory must be
// private to the pod or host service.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options are the agent's dependencies; zero values take the defaults.
type Options struct {
	Log *slog.Logger
	// Now is the clock; time.Now by default.
	Now func() time.Time
	// Jitter returns a random duration in [0, n); it spreads renewals of
	// many agents. A uniform source by default.
	Jitter func(n time.Duration) time.Duration
	// Exec, when set, is the application the agent runs as its child.
	Exec []string
}

// Agent keeps one workload's credentials current. It is safe for
// concurrent use; Run may be called once.
type Agent struct {
	cfg    *Config
	log    *slog.Logger
	now    func() time.Time
	jitter func(time.Duration) time.Duration
	broker *brokerClient
	out    writer
	tmpls  []*compiledTemplate
	child  *child

	mu       sync.Mutex
	identity *issued
	creds    map[string]*issued
	written  map[string]*issued   // the credential whose files are on disk
	due      map[string]time.Time // next renewal of each credential; "" is the identity
	failures map[string]int       // consecutive failures, for backoff
	writeErr error                // the last write or render failure
	changed  chan struct{}        // closed and replaced on every update

	issued atomic.Uint64 // credentials and agent certificates obtained
	failed atomic.Uint64 // failed attempts to obtain one
}

// Stats counts the agent's requests to the broker.
type Stats struct {
	Issued uint64 // credentials and agent certificates obtained
	Failed uint64 // attempts that failed (each retry counts)
}

// Stats returns the counters since New.
func (a *Agent) Stats() Stats {
	return Stats{Issued: a.issued.Load(), Failed: a.failed.Load()}
}

// identityKey is the key of the agent's own certificate in due.
const identityKey = ""

// New checks the configuration's files and templates and returns an agent.
// It contacts nothing.
func New(cfg *Config, opts Options) (*Agent, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Jitter == nil {
		opts.Jitter = func(n time.Duration) time.Duration {
			if n <= 0 {
				return 0
			}
			return rand.N(n)
		}
	}
	b, err := newBrokerClient(cfg.Broker)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:      cfg,
		log:      opts.Log,
		now:      opts.Now,
		jitter:   opts.Jitter,
		broker:   b,
		out:      writer{dir: cfg.OutputDir, owner: cfg.Owner},
		creds:    map[string]*issued{},
		written:  map[string]*issued{},
		due:      map[string]time.Time{},
		failures: map[string]int{},
		changed:  make(chan struct{}),
	}
	for i := range cfg.Templates {
		ct, err := parseTemplate(cfg.path, &cfg.Templates[i])
		if err != nil {
			return nil, err
		}
		a.tmpls = append(a.tmpls, ct)
	}
	if len(opts.Exec) > 0 {
		a.child = &child{argv: opts.Exec, log: a.log}
	}
	return a, nil
}

// InitOnly authenticates, fetches every credential, writes the files and
// renders the templates once. Any failure is returned and names the item.
func (a *Agent) InitOnly(ctx context.Context) error {
	if err := a.preflight(); err != nil {
		return err
	}
	if err := a.refreshIdentity(ctx); err != nil {
		return err
	}
	for i := range a.cfg.Credentials {
		cr := &a.cfg.Credentials[i]
		c, err := cr.kind.issue(ctx, a.broker, cr)
		if err != nil {
			return fmt.Errorf("credential %q: %w", cr.Name, err)
		}
		a.mu.Lock()
		a.creds[cr.Name] = c
		a.mu.Unlock()
	}
	return a.writeChanged(a.allNames())
}

// Run keeps the credentials current until ctx ends: it authenticates,
// fetches, writes and renews, and serves the Workload API, SDS and health
// endpoints that the configuration enables. It returns the first error of
// a listener, or nil when ctx ends. With Options.Exec it also ends when the
// child exits, returning *ExitError.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	if err := a.preflight(); err != nil {
		return err
	}
	errc := make(chan error, 4)
	if err := a.startServers(ctx, errc); err != nil {
		return err
	}

	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		a.loop(ctx)
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		cancel()
	}
	<-loopDone
	if a.child != nil {
		a.child.stop()
	}
	if a.cfg.RevokeOnShutdown {
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		a.revokeAll(rctx)
		rcancel()
	}
	a.log.Info("agent stopped")
	return err
}

// loop renews whatever is due, then sleeps until the next due time.
func (a *Agent) loop(ctx context.Context) {
	a.log.Info("agent started", "broker", a.cfg.Broker.Addr, "credentials", len(a.cfg.Credentials))
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		next := a.step(ctx)
		timer.Reset(max(next.Sub(a.now()), 0))
	}
}

// step renews the identity and the credentials that are due and returns
// when the next one is.
func (a *Agent) step(ctx context.Context) time.Time {
	now := a.now()

	if a.dueAt(identityKey, now) {
		if err := a.refreshIdentity(ctx); err != nil {
			a.failed.Add(1)
			a.log.Error("agent identity renewal failed, will retry", "error", err)
			a.retryLater(identityKey, a.identityLifetime())
		}
	}
	if a.spiffeID() == "" {
		return a.nextDue()
	}

	var changed []string
	for i := range a.cfg.Credentials {
		cr := &a.cfg.Credentials[i]
		if !a.dueAt(cr.Name, now) {
			continue
		}
		c, fresh, err := a.refresh(ctx, cr)
		if err != nil {
			a.failed.Add(1)
			a.log.Error("credential renewal failed, will retry", "credential", cr.Name, "error", err)
			a.retryLater(cr.Name, a.lifetimeOf(cr.Name, cr.TTL.Duration))
			if unauthorized(err) {
				// The broker no longer accepts the agent's certificate
				// (revoked or expired on its clock): authenticate afresh.
				a.scheduleNow(identityKey)
			}
			continue
		}
		a.issued.Add(1)
		a.mu.Lock()
		if !fresh && a.written[cr.Name] == a.creds[cr.Name] {
			// Same secret, later expiry: the files on disk stay current.
			a.written[cr.Name] = c
		}
		a.creds[cr.Name] = c
		a.failures[cr.Name] = 0
		a.due[cr.Name] = a.renewalTime(c)
		a.mu.Unlock()
		if fresh {
			a.log.Info("credential issued", "credential", c)
			changed = append(changed, cr.Name)
		} else {
			// NOTE: templates are not rendered again for a lease renewal, so
			// a template's expires_at keeps the expiry of the last issue.
			a.log.Info("credential lease renewed", "credential", c)
		}
	}

	if len(changed) > 0 {
		if err := a.writeChanged(changed); err != nil {
			a.log.Error("writing credentials failed, previous files kept", "error", err)
		} else {
			a.notify()
		}
		a.publish()
	}
	return a.nextDue()
}

// refresh renews the credential's lease and keeps the secret (fresh is
// false) when its kind allows it and the lease is not at its maximum.
// Otherwise it issues a new credential (fresh is true).
func (a *Agent) refresh(ctx context.Context, cr *Credential) (c *issued, fresh bool, err error) {
	a.mu.Lock()
	cur := a.creds[cr.Name]
	a.mu.Unlock()
	now := a.now()
	if r, ok := cr.kind.(renewer); ok && cur != nil && cur.leaseID != "" && now.Before(cur.expiresAt) {
		c, err := r.renew(ctx, a.broker, cr, cur, now)
		var apiErr *APIError
		switch {
		case err == nil:
			return c, false, nil
		case errors.Is(err, errLeaseAtMax), errors.As(err, &apiErr) && apiErr.Status != http.StatusUnauthorized && apiErr.Status < 500:
			// Not renewable (any more): fall through to a new secret.
			a.log.Info("credential lease not renewable, issuing a new one", "credential", cr.Name, "reason", err)
		default:
			return nil, false, err
		}
	}
	c, err = cr.kind.issue(ctx, a.broker, cr)
	return c, true, err
}

// renewalTime is half the credential's lifetime after issue, moved by up to
// a tenth of the lifetime either way so that many agents spread out.
func (a *Agent) renewalTime(c *issued) time.Time {
	life := c.lifetime()
	spread := life / 10
	at := c.issuedAt.Add(life/2 - spread + a.jitter(2*spread+1))
	// A floor of one second keeps a credential with a tiny lifetime (or a
	// skewed clock) from being requested in a tight loop.
	if floor := a.now().Add(time.Second); at.Before(floor) {
		return floor
	}
	return at
}

// retryLater schedules a retry with exponential backoff from one second,
// capped at a tenth of the lifetime (at least a second) and 30 seconds.
func (a *Agent) retryLater(key string, lifetime time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failures[key]++
	limit := min(max(lifetime/10, time.Second), 30*time.Second)
	delay := time.Second << min(a.failures[key]-1, 5)
	a.due[key] = a.now().Add(min(delay, limit))
}

func (a *Agent) scheduleNow(key string) {
	a.mu.Lock()
	a.due[key] = time.Time{}
	a.mu.Unlock()
}

func (a *Agent) dueAt(key string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.due[key]
	return !ok || !now.Before(t)
}

func (a *Agent) nextDue() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	next := a.now().Add(time.Minute)
	idDue, ok := a.due[identityKey]
	if !ok {
		return a.now()
	}
	if a.identity == nil {
		// Nothing else can be fetched before the agent has authenticated.
		return idDue
	}
	for i := range a.cfg.Credentials {
		t, ok := a.due[a.cfg.Credentials[i].Name]
		if !ok {
			return a.now()
		}
		next = minTime(next, t)
	}
	return minTime(next, a.due[identityKey])
}

func (a *Agent) identityLifetime() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.identity != nil {
		return a.identity.lifetime()
	}
	return a.cfg.IdentityTTL.Duration
}

func (a *Agent) lifetimeOf(name string, configured time.Duration) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.creds[name]; c != nil {
		return c.lifetime()
	}
	if configured > 0 {
		return configured
	}
	return time.Minute
}

func (a *Agent) allNames() []string {
	names := make([]string, 0, len(a.cfg.Credentials))
	for i := range a.cfg.Credentials {
		names = append(names, a.cfg.Credentials[i].Name)
	}
	return names
}

// Ready returns nil when the agent holds a valid certificate of its own and
// an unexpired copy of every credential, all written out. Otherwise the
// error gives the reason.
func (a *Agent) Ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if a.identity == nil {
		return errors.New("not yet authenticated to the broker")
	}
	if !now.Before(a.identity.expiresAt) {
		return fmt.Errorf("agent certificate expired at %s and the broker has not renewed it", a.identity.expiresAt.Format(time.RFC3339))
	}
	for i := range a.cfg.Credentials {
		name := a.cfg.Credentials[i].Name
		c := a.creds[name]
		if c == nil {
			return fmt.Errorf("credential %q not yet issued", name)
		}
		if !now.Before(c.expiresAt) {
			return fmt.Errorf("credential %q expired at %s", name, c.expiresAt.Format(time.RFC3339))
		}
		if a.cfg.OutputDir != "" && a.written[name] != c {
			return fmt.Errorf("credential %q not yet written", name)
		}
	}
	if a.writeErr != nil {
		return a.writeErr
	}
	return nil
}

// publish wakes everyone waiting in watch.
func (a *Agent) publish() {
	a.mu.Lock()
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
}

// watch returns a channel closed at the next change of any credential.
func (a *Agent) watch() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}

// current returns the unexpired credentials of the kinds given, in
// configuration order.
func (a *Agent) current(kindName string) []*issued {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	var out []*issued
	for i := range a.cfg.Credentials {
		cr := &a.cfg.Credentials[i]
		if kinds[kindName] != cr.kind {
			continue
		}
		if c := a.creds[cr.Name]; c != nil && now.Before(c.expiresAt) {
			out = append(out, c)
		}
	}
	return out
}

// revokeAll requests revocation of the leases of the current
// credentials. Failures are logged: the leases then end at their expiry.
func (a *Agent) revokeAll(ctx context.Context) {
	if !a.cfg.RevokeOnShutdown {
		return
	}
	a.mu.Lock()
	var leases []string
	for _, c := range a.creds {
		if c.leaseID != "" {
			leases = append(leases, c.leaseID)
		}
	}
	a.mu.Unlock()
	slices.Sort(leases)
	for _, id := range leases {
		if err := a.broker.post(ctx, "/v1/leases/revoke", map[string]string{"lease_id": id}, &struct{}{}); err != nil {
			a.log.Warn("lease revocation failed, it ends at its expiry", "lease_id", id, "error", err)
			continue
		}
		a.log.Info("lease revoked", "lease_id", id)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// pidFromFile reads a process id written as decimal text.
func pidFromFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var pid int
	if _, err := fmt.Sscanf(string(b), "%d", &pid); err != nil || pid <= 1 {
		return 0, fmt.Errorf("%s does not contain a process id", path)
	}
	return pid, nil
}

// preflight checks, before the agent authenticates, that it can write its
// output directory, creating it (mode 0750) when missing. A join token is
// spent by the first authentication, so a failure that would come only
// after it must be found first.
func (a *Agent) preflight() error {
	if d := a.cfg.StateDir; d != "" {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("state_dir %s: %w", d, err)
		}
		if err := checkStateDir(d, a.cfg.OutputDir); err != nil {
			return err
		}
	}
	dir := a.cfg.OutputDir
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("output_dir %s: %w", dir, err)
	}
	probe, err := os.CreateTemp(dir, ".ward-agent-probe-*")
	if err != nil {
		return fmt.Errorf("output_dir %s is not writable: %w", dir, err)
	}
	probe.Close()
	return os.Remove(probe.Name())
}
