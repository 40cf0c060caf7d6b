// Package vaulttest is an in-process stand-in for a HashiCorp Vault
// server, for tests of ward's Vault client. It listens on 127.0.0.1 with
// net/http/httptest and follows the request and response shapes of
// Vault's HTTP API (https://developer.hashicorp.com/vault/api-docs) for
// exactly these endpoints:
//
//	GET  /v1/auth/token/lookup-self       POST /v1/auth/token/renew-self
//	POST /v1/auth/approle/login           POST /v1/auth/kubernetes/login
//	GET  /v1/<kv>/data/<path>             POST /v1/<kv>/data/<path>      (KV v2)
//	GET  /v1/database/creds/<role>
//	PUT  /v1/sys/leases/renew             PUT  /v1/sys/leases/revoke
//	POST /v1/pki/sign/<role>              POST /v1/pki/revoke
//	POST /v1/transit/encrypt/<key>        POST /v1/transit/decrypt/<key>
//
// Errors are {"errors":[...]} bodies: 403 for a missing, unknown or
// expired token, 404 for an unknown path, 400 for a bad request, and 503
// for every request while the server is sealed. Any valid token may use
// every endpoint, because policies are out of scope.
//
// The stand-in keeps everything in memory and is safe for concurrent use.
// It is not Vault: anything beyond these endpoints returns 404.
package vaulttest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Server is a running stand-in. Its methods are safe for concurrent use.
type Server struct {
	srv  *httptest.Server
	root string

	mu       sync.Mutex
	now      func() time.Time
	sealed   bool
	tokens   map[string]*token
	approles map[string]appRole // by role_id
	k8sRoles map[string]string  // role name to the accepted service-account JWT
	kv       map[string][]kvVersion
	dbRoles  map[string]DatabaseRole
	leases   map[string]*lease
	transit  map[string][]byte
	pki      *pkiCA
	requests map[string]int // "METHOD /v1/path" to count, for assertions
	noRenew  bool

	inFlight    atomic.Int64
	maxInFlight atomic.Int64
}

type token struct {
	id          string
	ttl         time.Duration // 0: never expires
	expiresAt   time.Time
	renewable   bool
	explicitMax time.Duration
	issuedAt    time.Time
}

type appRole struct {
	secretID  string
	tokenTTL  time.Duration
	renewable bool
}

// TokenOptions shape a token that a login or NewToken creates.
type TokenOptions struct {
	TTL         time.Duration // 0: never expires, like a root token
	Renewable   bool
	ExplicitMax time.Duration // 0: no cap on renewals
}

// New starts a stand-in and closes it when the test ends. The root token
// never expires.
func New(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{
		now:      time.Now,
		tokens:   map[string]*token{},
		approles: map[string]appRole{},
		k8sRoles: map[string]string{},
		kv:       map[string][]kvVersion{},
		dbRoles:  map[string]DatabaseRole{},
		leases:   map[string]*lease{},
		transit:  map[string][]byte{},
		requests: map[string]int{},
	}
	s.root = s.NewToken(TokenOptions{})
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.srv.Close)
	return s
}

// Addr returns the server's base URL, for VAULT_ADDR.
func (s *Server) Addr() string { return s.srv.URL }

// RootToken returns a token that never expires.
func (s *Server) RootToken() string { return s.root }

// SetClock replaces the clock that token and lease expiry use.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// Seal makes every request fail with 503 until Unseal.
func (s *Server) Seal() { s.setSealed(true) }

// Unseal ends Seal.
func (s *Server) Unseal() { s.setSealed(false) }

func (s *Server) setSealed(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealed = v
}

// RefuseTokenRenewal makes renew-self fail with 400 while set, as Vault
// does for a token past its maximum TTL.
func (s *Server) RefuseTokenRenewal(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noRenew = v
}

// Requests returns how many requests reached method and path, for example
// Requests("POST", "/v1/auth/approle/login").
func (s *Server) Requests(method, path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[method+" "+path]
}

// MaxInFlight returns the largest number of requests that were in progress
// at once.
func (s *Server) MaxInFlight() int { return int(s.maxInFlight.Load()) }

// NewToken creates a token.
func (s *Server) NewToken(o TokenOptions) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newTokenLocked(o).id
}

// RevokeToken makes a token invalid.
func (s *Server) RevokeToken(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, id)
}

func (s *Server) newTokenLocked(o TokenOptions) *token {
	now := s.now()
	t := &token{id: "hvs." + randomHex(12), ttl: o.TTL, renewable: o.Renewable, explicitMax: o.ExplicitMax, issuedAt: now}
	if o.TTL > 0 {
		t.expiresAt = now.Add(o.TTL)
	}
	s.tokens[t.id] = t
	return t
}

// AddAppRole lets role_id and secret_id log in at auth/approle/login and
// get a token shaped by o.
func (s *Server) AddAppRole(roleID, secretID string, o TokenOptions) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.approles[roleID] = appRole{secretID: secretID, tokenTTL: o.TTL, renewable: o.Renewable}
}

// AddKubernetesRole lets the service-account JWT jwt log in as role at
// auth/kubernetes/login. The stand-in compares the JWT and does not
// verify it.
func (s *Server) AddKubernetesRole(role, jwt string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.k8sRoles[role] = jwt
}

// serve checks the seal and the token, then routes the request.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		peak := s.maxInFlight.Load()
		if n <= peak || s.maxInFlight.CompareAndSwap(peak, n) {
			break
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	s.requests[r.Method+" "+r.URL.Path]++
	if s.sealed {
		writeErrors(w, http.StatusServiceUnavailable, "Vault is sealed")
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		writeErrors(w, http.StatusNotFound)
		return
	}

	// Logins are the only requests without a token.
	switch path {
	case "auth/approle/login":
		s.approleLogin(w, r)
		return
	case "auth/kubernetes/login":
		s.kubernetesLogin(w, r)
		return
	}

	tok := s.tokens[r.Header.Get("X-Vault-Token")]
	if tok == nil || (!tok.expiresAt.IsZero() && !s.now().Before(tok.expiresAt)) {
		writeErrors(w, http.StatusForbidden, "permission denied")
		return
	}
	s.route(w, r, path, tok)
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, path string, tok *token) {
	read := r.Method == http.MethodGet
	write := r.Method == http.MethodPost || r.Method == http.MethodPut

	switch {
	case path == "auth/token/lookup-self" && read:
		s.lookupSelf(w, tok)
	case path == "auth/token/renew-self" && write:
		s.renewSelf(w, r, tok)
	case path == "sys/leases/renew" && write:
		s.renewLease(w, r)
	case path == "sys/leases/revoke" && write:
		s.revokeLease(w, r)
	case strings.HasPrefix(path, "database/creds/") && read:
		s.databaseCreds(w, strings.TrimPrefix(path, "database/creds/"))
	case strings.HasPrefix(path, "pki/sign/") && write:
		s.pkiSign(w, r, strings.TrimPrefix(path, "pki/sign/"))
	case path == "pki/revoke" && write:
		s.pkiRevoke(w, r)
	case strings.HasPrefix(path, "transit/encrypt/") && write:
		s.transitEncrypt(w, r, strings.TrimPrefix(path, "transit/encrypt/"))
	case strings.HasPrefix(path, "transit/decrypt/") && write:
		s.transitDecrypt(w, r, strings.TrimPrefix(path, "transit/decrypt/"))
	case strings.Contains(path, "/data/") && (read || write):
		mount, secretPath, _ := strings.Cut(path, "/data/")
		if read {
			s.kvRead(w, mount, secretPath)
		} else {
			s.kvWrite(w, r, mount, secretPath)
		}
	default:
		writeErrors(w, http.StatusNotFound)
	}
}

func (s *Server) lookupSelf(w http.ResponseWriter, tok *token) {
	ttl := 0
	expire := any(nil)
	if !tok.expiresAt.IsZero() {
		ttl = int(tok.expiresAt.Sub(s.now()).Seconds())
		expire = tok.expiresAt.UTC().Format(time.RFC3339Nano)
	}
	writeJSON(w, http.StatusOK, response{Data: map[string]any{
		"id":               tok.id,
		"accessor":         "acc-" + tok.id[len(tok.id)-6:],
		"creation_time":    tok.issuedAt.Unix(),
		"creation_ttl":     int(tok.ttl.Seconds()),
		"expire_time":      expire,
		"explicit_max_ttl": int(tok.explicitMax.Seconds()),
		"issue_time":       tok.issuedAt.UTC().Format(time.RFC3339Nano),
		"policies":         []string{"default"},
		"renewable":        tok.renewable,
		"ttl":              ttl,
		"type":             "service",
	}})
}

func (s *Server) renewSelf(w http.ResponseWriter, r *http.Request, tok *token) {
	var body struct {
		Increment any `json:"increment"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	if s.noRenew || !tok.renewable || tok.ttl == 0 {
		writeErrors(w, http.StatusBadRequest, "lease is not renewable")
		return
	}

	now := s.now()
	increment, ok := parseSeconds(body.Increment)
	if !ok || increment <= 0 {
		increment = tok.ttl
	}
	expires := now.Add(increment)
	if tok.explicitMax > 0 && expires.After(tok.issuedAt.Add(tok.explicitMax)) {
		expires = tok.issuedAt.Add(tok.explicitMax)
	}
	tok.expiresAt = expires
	writeJSON(w, http.StatusOK, response{Auth: authBlock(tok, int(expires.Sub(now).Seconds()))})
}

func (s *Server) approleLogin(w http.ResponseWriter, r *http.Request) {
	var body struct {
		RoleID   string `json:"role_id"`
		SecretID string `json:"secret_id"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	role, ok := s.approles[body.RoleID]
	if !ok || role.secretID != body.SecretID {
		writeErrors(w, http.StatusBadRequest, "invalid role or secret ID")
		return
	}
	tok := s.newTokenLocked(TokenOptions{TTL: role.tokenTTL, Renewable: role.renewable})
	writeJSON(w, http.StatusOK, response{Auth: authBlock(tok, int(role.tokenTTL.Seconds()))})
}

func (s *Server) kubernetesLogin(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Role string `json:"role"`
		JWT  string `json:"jwt"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	jwt, ok := s.k8sRoles[body.Role]
	if !ok || jwt != body.JWT {
		writeErrors(w, http.StatusForbidden, "permission denied")
		return
	}
	tok := s.newTokenLocked(TokenOptions{TTL: time.Hour, Renewable: true})
	writeJSON(w, http.StatusOK, response{Auth: authBlock(tok, 3600)})
}

// response is the envelope of every successful Vault response.
type response struct {
	RequestID     string         `json:"request_id"`
	LeaseID       string         `json:"lease_id"`
	Renewable     bool           `json:"renewable"`
	LeaseDuration int            `json:"lease_duration"`
	Data          map[string]any `json:"data"`
	WrapInfo      any            `json:"wrap_info"`
	Warnings      []string       `json:"warnings"`
	Auth          map[string]any `json:"auth"`
}

func authBlock(tok *token, leaseSeconds int) map[string]any {
	return map[string]any{
		"client_token":   tok.id,
		"accessor":       "acc-" + tok.id[len(tok.id)-6:],
		"policies":       []string{"default"},
		"token_policies": []string{"default"},
		"metadata":       map[string]string{},
		"lease_duration": leaseSeconds,
		"renewable":      tok.renewable,
		"entity_id":      "",
		"token_type":     "service",
		"orphan":         true,
	}
}

func writeJSON(w http.ResponseWriter, status int, v response) {
	v.RequestID = randomHex(8)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeErrors writes Vault's error body, {"errors":[...]}; a 404 has an
// empty list, as Vault sends for an unknown path.
func writeErrors(w http.ResponseWriter, status int, msgs ...string) {
	if msgs == nil {
		msgs = []string{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string][]string{"errors": msgs})
}

// maxBody bounds request bodies; the largest legitimate one is a CSR.
const maxBody = 1 << 20

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(v); err != nil && err.Error() != "EOF" {
		writeErrors(w, http.StatusBadRequest, "failed to parse JSON input: "+err.Error())
		return false
	}
	return true
}

// parseSeconds reads a Vault duration field: a number of seconds or a Go
// duration string such as "1h".
func parseSeconds(v any) (time.Duration, bool) {
	switch x := v.(type) {
	case float64:
		return time.Duration(x) * time.Second, true
	case string:
		if d, err := time.ParseDuration(x); err == nil {
			return d, true
		}
	}
	return 0, false
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
