package authz

import (
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// Enforcer decides authorization requests from a model file and a policy
// file, reloads them on request and applies the quarantine overlay. It is
// safe for concurrent use: decisions read an immutable snapshot of the
// policy, and Reload replaces the snapshot atomically.
type Enforcer struct {
	modelPath  string
	policyPath string
	logger     *slog.Logger
	cacheSize  int

	current  atomic.Pointer[snapshot]
	reloadMu sync.Mutex // serializes Reload and guards reloadCheck

	reloadCheck func(candidate RuleSource) error

	// quarantine holds an immutable map of SPIFFE ID to reason; writers
	// replace it under mu.
	quarantine  atomic.Pointer[map[string]string]
	generation  atomic.Uint64 // see Generation
	mu          sync.Mutex
	subscribers map[uint64]chan uint64
	nextID      uint64
}

// Option configures an Enforcer.
type Option func(*Enforcer)

// WithLogger sets the logger for policy loads, quarantine changes and
// failed decisions. The default, and a nil l, discard.
func WithLogger(l *slog.Logger) Option {
	return func(e *Enforcer) {
		if l != nil {
			e.logger = l
		}
	}
}

// WithCacheSize sets how many decisions each policy version caches; 0
// disables the cache. The default is DefaultCacheSize.
func WithCacheSize(n int) Option {
	return func(e *Enforcer) { e.cacheSize = n }
}

// New loads the model and policy files and returns an Enforcer for them.
// Errors in either file wrap ErrInvalidPolicy and name file:line.
func New(modelPath, policyPath string, opts ...Option) (*Enforcer, error) {
	e := &Enforcer{
		modelPath:   modelPath,
		policyPath:  policyPath,
		logger:      slog.New(slog.DiscardHandler),
		cacheSize:   DefaultCacheSize,
		subscribers: make(map[uint64]chan uint64),
	}
	for _, opt := range opts {
		opt(e)
	}

	empty := map[string]string{}
	e.quarantine.Store(&empty)

	s, err := loadSnapshot(modelPath, policyPath, e.cacheSize)
	if err != nil {
		return nil, err
	}

	s.version = 1
	s.logger = e.logger
	e.current.Store(s)
	e.logLoad(s)
	return e, nil
}

// Decide returns whether subject may perform action on object in domain.
// Malformed requests and quarantined identities are denied; otherwise Casbin
// decides, denying what no line allows and what any matching line denies.
func (e *Enforcer) Decide(subject, domain, object, action string) Decision {
	if problem := checkRequest(subject, domain, object, action); problem != "" {
		return Decision{Reason: "invalid request: " + problem}
	}

	if reason, ok := e.quarantineReason(subject, object); ok {
		return Decision{Reason: "quarantined: " + reason}
	}
	return e.current.Load().decide(subject, domain, object, action)
}

// quarantineReason reports whether the request involves a quarantined
// identity: as the subject, or as the identity named by an x509/, jwt/ or
// service/ object (so no credentials are issued for it and no connection
// to it is allowed).
func (e *Enforcer) quarantineReason(subject, object string) (string, bool) {
	q := *e.quarantine.Load()
	if len(q) == 0 {
		return "", false
	}

	if reason, ok := q[subject]; ok {
		return reason, true
	}

	for _, kind := range [...]string{"x509/", "jwt/", "service/"} {
		if id, ok := strings.CutPrefix(object, kind); ok {
			reason, found := q[id]
			return reason, found
		}
	}
	return "", false
}

// Reload re-reads the model and policy files and, if both are valid, makes
// them the policy in force and increments the version. On any error the
// previous policy stays in force. The error names the file, and the line
// for a problem in its content. A check set with SetReloadCheck runs on the
// candidate policy before it is accepted, and its error rejects it.
func (e *Enforcer) Reload() error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()

	s, err := loadSnapshot(e.modelPath, e.policyPath, e.cacheSize)
	if err != nil {
		return err
	}

	if e.reloadCheck != nil {
		if err := e.reloadCheck(s); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
		}
	}

	s.version = e.current.Load().version + 1
	s.logger = e.logger
	e.current.Store(s)
	e.generation.Add(1)
	e.logLoad(s)
	e.notify(s.version)
	return nil
}

// SetReloadCheck makes every later Reload call check with the candidate
// policy after it parses and before it replaces the policy in force. An
// error from check rejects the candidate: Reload returns it wrapped in
// ErrInvalidPolicy and the previous policy stays in force. check must not
// call Reload. A nil check removes the check. The policy loaded by New is
// not checked.
func (e *Enforcer) SetReloadCheck(check func(candidate RuleSource) error) {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()

	e.reloadCheck = check
}

func (e *Enforcer) logLoad(s *snapshot) {
	e.logger.Info("policy loaded",
		slog.Uint64("version", s.version),
		slog.String("policy_file", s.policy.path),
		slog.String("model_file", s.model.path),
		slog.Int("policy_lines", len(s.policy.rules)),
		slog.Int("role_lines", len(s.policy.roles)),
		slog.Int("duplicate_lines", s.policy.lines-len(s.policy.rules)-len(s.policy.roles)),
		slog.Bool("indexed", s.model.indexed))
}

// Version returns the version of the policy in force. It starts at 1 and
// increments on each accepted Reload.
func (e *Enforcer) Version() uint64 {
	return e.current.Load().version
}

// Generation returns a number that changes whenever a decision may
// change: it grows after each accepted Reload and each quarantine change,
// once the change is in force. A caller that caches decisions reads it
// before deciding and reuses the result only while it is unchanged.
func (e *Enforcer) Generation() uint64 {
	return e.generation.Load()
}

// Subscribe returns a channel that receives the policy version after every
// accepted Reload and every quarantine change, and a function that ends the
// subscription and closes the channel. Sends never block: a subscriber that
// has not read the previous value finds only the latest one.
func (e *Enforcer) Subscribe() (<-chan uint64, func()) {
	ch := make(chan uint64, 1)

	e.mu.Lock()
	id := e.nextID
	e.nextID++
	e.subscribers[id] = ch
	e.mu.Unlock()

	var once sync.Once
	return ch, func() {
		once.Do(func() {
			e.mu.Lock()
			delete(e.subscribers, id)
			close(ch)
			e.mu.Unlock()
		})
	}
}

// notify sends version to every subscriber, replacing an unread value.
func (e *Enforcer) notify(version uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()

	for _, ch := range e.subscribers {
		select {
		case <-ch:
		default:
		}
		ch <- version // cannot block: the buffer is empty and only notify sends, under mu
	}
}

// Quarantine denies every request from spiffeID, and every request for an
// x509/, jwt/ or service/ object naming it, until Release. No policy line
// overrides it. Quarantining an identity again replaces the reason. The
// reason goes into every Decision it causes, so control characters in it
// become spaces and it is cut to maxReasonBytes.
func (e *Enforcer) Quarantine(spiffeID, reason string) {
	reason = cleanReason(reason)
	e.updateQuarantine(func(q map[string]string) { q[spiffeID] = reason })
	e.logger.Info("identity quarantined", slog.String("spiffe_id", spiffeID), slog.String("reason", reason))
}

// Release lifts the quarantine of spiffeID; it does nothing if none is set.
func (e *Enforcer) Release(spiffeID string) {
	e.updateQuarantine(func(q map[string]string) { delete(q, spiffeID) })
	e.logger.Info("identity released", slog.String("spiffe_id", spiffeID))
}

// maxReasonBytes bounds a quarantine reason, which each denial repeats.
const maxReasonBytes = 256

// cleanReason returns reason on one line and at most maxReasonBytes long,
// cut at a character boundary.
func cleanReason(reason string) string {
	reason = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, reason)

	if len(reason) <= maxReasonBytes {
		return reason
	}
	cut := maxReasonBytes
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}

// Quarantined returns a copy of the quarantined SPIFFE IDs and their reasons.
func (e *Enforcer) Quarantined() map[string]string {
	return maps.Clone(*e.quarantine.Load())
}

func (e *Enforcer) updateQuarantine(change func(map[string]string)) {
	e.mu.Lock()
	q := maps.Clone(*e.quarantine.Load())
	change(q)
	e.quarantine.Store(&q)
	e.generation.Add(1)
	e.mu.Unlock()

	e.notify(e.Version())
}
