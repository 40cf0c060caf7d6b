package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"ward.dev/ward/authz"
	"ward.dev/ward/internal/audit"
)

// request is one authenticated API call being served.
type request struct {
	r      *http.Request
	caller caller
	rec    *audit.Record // the handler sets Object, LeaseID and HMACs
}

// handler serves one authenticated call. A nil error means success and
// resp is sent as JSON with status 200.
type handler func(req *request) (resp any, err *apiError)

// Handler returns the HTTP API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()

	// Unauthenticated: health without detail, and public key material.
	mux.HandleFunc("GET /v1/health", s.handleHealth)
	mux.HandleFunc("GET /v1/bundle", s.handleBundle)
	mux.HandleFunc("GET /v1/crl", s.handleCRL)
	mux.HandleFunc("GET /v1/jwks", s.handleJWKS)

	// The join token is the credential of this call.
	mux.HandleFunc("POST /v1/auth/join", s.serve("join", false, s.handleJoin))
	if s.k8s != nil {
		mux.Handle("POST /v1/auth/kubernetes", s.KubernetesAuthHandler(s.k8s))
	}

	mux.HandleFunc("POST /v1/tokens/join", s.serve("create-token", true, s.handleCreateJoinToken))
	mux.HandleFunc("POST /v1/issue/x509", s.serve("issue", true, s.handleIssueX509))
	mux.HandleFunc("POST /v1/issue/jwt", s.serve("issue", true, s.handleIssueJWT))
	mux.HandleFunc("POST /v1/issue/db", s.serve("issue", true, s.handleIssueDB))
	mux.HandleFunc("POST /v1/issue/vault", s.serve("issue", true, s.handleIssueVault))
	mux.HandleFunc("GET /v1/leases", s.serve("list-leases", true, s.handleListLeases))
	mux.HandleFunc("POST /v1/leases/renew", s.serve("renew", true, s.handleRenew))
	mux.HandleFunc("POST /v1/leases/revoke", s.serve("revoke", true, s.handleRevoke))
	mux.HandleFunc("POST /v1/policy/check", s.serve("policy-check", true, s.handlePolicyCheck))
	mux.HandleFunc("POST /v1/policy/reload", s.serve("policy-reload", true, s.handlePolicyReload))
	mux.HandleFunc("POST /v1/transform/tokenize", s.serve("tokenize", true, s.handleTransform(false)))
	mux.HandleFunc("POST /v1/transform/detokenize", s.serve("detokenize", true, s.handleTransform(true)))
	mux.HandleFunc("POST /v1/mesh/quarantine", s.serve("quarantine", true, s.handleQuarantine))
	mux.HandleFunc("POST /v1/mesh/release", s.serve("release", true, s.handleRelease))
	mux.HandleFunc("GET /v1/mesh/status", s.serve("mesh-status", true, s.handleMeshStatus))
	mux.HandleFunc("GET /v1/mesh/services", s.serve("mesh-services", true, s.handleMeshServices))
	mux.HandleFunc("POST /v1/mesh/services", s.serve("mesh-service-add", true, s.handleMeshServiceAdd))
	mux.HandleFunc("DELETE /v1/mesh/services/{name}", s.serve("mesh-service-remove", true, s.handleMeshServiceRemove))
	mux.HandleFunc("GET /v1/mesh/quarantine", s.serve("list-quarantine", true, s.handleListQuarantine))

	metrics := promhttp.HandlerFor(s.met.registry, promhttp.HandlerOpts{})
	mux.HandleFunc("GET /metrics", s.serve("read-metrics", true, func(req *request) (any, *apiError) {
		req.rec.Object = "metrics"
		if err := s.require(req, "metrics", "read"); err != nil {
			return nil, err
		}
		return rawHandler{metrics}, nil
	}))

	return jsonNotFound{mux}
}

// rawHandler is a response served by another http.Handler after auditing.
type rawHandler struct{ http.Handler }

// serve authenticates the caller (when authn is set), runs h, writes the
// audit record and only then sends the response. If the audit record cannot
// be written the client gets 503 and not the response.
func (s *Server) serve(action string, authn bool, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		rec := &audit.Record{Action: action, Remote: r.RemoteAddr, Domain: s.cfg.Environment}
		req := &request{r: r, rec: rec}

		var resp any
		var err *apiError
		if reason := s.sealedReason(); reason != "" {
			err = errorf(http.StatusServiceUnavailable, "sealed: %s", reason)
		} else if authn {
			c, ok := s.authenticate(r)
			if ok {
				req.caller = c
				rec.Caller = c.id
				resp, err = h(req)
			} else {
				err = errorf(http.StatusUnauthorized, "authentication required: present a ward client certificate or a bearer token")
			}
		} else {
			resp, err = h(req)
		}

		rec.Decision = "allow"
		if err != nil {
			rec.Reason = err.msg
			rec.Decision = "error"
			if err.status == http.StatusUnauthorized || err.status == http.StatusForbidden {
				rec.Decision = "deny"
			}
		}
		if aerr := s.audit.Write(*rec); aerr != nil {
			s.writeError(w, r, unavailable("audit log unavailable, request not served", aerr))
			return
		}

		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if raw, ok := resp.(rawHandler); ok {
			raw.ServeHTTP(w, r)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

// decide returns the policy decision and counts it.
func (s *Server) decide(subject, object, action string) authz.Decision {
	d := s.authz.Decide(subject, s.cfg.Environment, object, action)
	s.met.decision(d.Allowed)
	return d
}

// require returns 403 unless the caller may do action on object.
func (s *Server) require(req *request, object, action string) *apiError {
	d := s.decide(req.caller.id, object, action)
	if d.Allowed {
		return nil
	}
	return errorf(http.StatusForbidden, "%s may not %s %s in %s: %s", req.caller.id, action, clip(object), s.cfg.Environment, d.Reason)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if s.sealedReason() != "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "sealed"})
		return
	}
	if err := s.store.Ping(r.Context()); err != nil {
		s.log.Error("health check: store unreachable", "error", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleBundle(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(s.caPEM)
}

func (s *Server) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.jwt.JWKS())
}

// jsonNotFound serves a JSON error for requests that match no route: 404
// for an unknown path, and 405 with the mux's Allow header for a known path
// with another method.
type jsonNotFound struct{ mux *http.ServeMux }

func (j jsonNotFound) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := j.mux.Handler(r)
	if pattern != "" {
		j.mux.ServeHTTP(w, r)
		return
	}
	probe := &statusProbe{header: http.Header{}}
	h.ServeHTTP(probe, r)
	if allow := probe.header.Get("Allow"); probe.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", allow)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method " + r.Method + " not allowed on " + clip(r.URL.Path) + "; allowed: " + allow})
		return
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint: " + r.Method + " " + clip(r.URL.Path)})
}

// statusProbe records the status and headers the mux's fallback handler
// would send, and drops its body.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(code int)        { p.status = code }
