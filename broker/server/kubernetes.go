package server

import (
	"errors"
	"net/http"
	"strings"

	"ward.dev/ward/broker/k8sauth"
)

// kubernetesRequest is the body of POST /v1/auth/kubernetes: a projected
// service-account token and a CSR for the workload's certificate.
type kubernetesRequest struct {
	Token string `json:"token"`
	CSR   string `json:"csr"`
	TTL   string `json:"ttl,omitempty"`
}

// KubernetesAuthHandler serves POST /v1/auth/kubernetes with v: a pod
// exchanges its service-account token for an X.509-SVID of
// spiffe://<trust domain>/ns/<namespace>/sa/<service account>, if the
// policy lets that ID issue its own certificate. The token is the
// credential of the call; the audit record carries only its HMAC.
func (s *Server) KubernetesAuthHandler(v k8sauth.Verifier) http.Handler {
	return s.serve("auth-kubernetes", false, func(req *request) (any, *apiError) {
		return s.handleKubernetesAuth(req, v)
	})
}

func (s *Server) handleKubernetesAuth(req *request, v k8sauth.Verifier) (any, *apiError) {
	var body kubernetesRequest
	if err := decode(req.r, &body); err != nil {
		return nil, err
	}
	req.rec.Object = "kubernetes"
	if body.Token == "" {
		return nil, errorf(http.StatusBadRequest, "missing token: send the pod's projected service-account token")
	}
	if strings.TrimSpace(body.CSR) == "" {
		return nil, errorf(http.StatusBadRequest, "missing csr: send a PEM certificate signing request")
	}
	req.rec.HMACs = map[string]string{"kubernetes_token": s.audit.HMAC([]byte(body.Token))}

	id, err := v.Verify(req.r.Context(), body.Token)
	switch {
	case errors.Is(err, k8sauth.ErrInvalidToken):
		// The reason names the failed check (audience, expiry, signature)
		// and never the token itself.
		return nil, errorf(http.StatusUnauthorized, "service-account token rejected: %s", strings.TrimPrefix(err.Error(), k8sauth.ErrInvalidToken.Error()+": "))
	case err != nil:
		return nil, unavailable("service-account token verification unavailable", err)
	}

	spiffeID := k8sauth.SPIFFEID(s.cfg.TrustDomain, id)
	req.caller = caller{id: spiffeID, method: "kubernetes"}
	req.rec.Caller = spiffeID
	return s.issueX509(req, spiffeID, x509Request{CSR: body.CSR, TTL: body.TTL})
}
