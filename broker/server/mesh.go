package server

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"ward.dev/ward/authz"
	"ward.dev/ward/broker/ca"
	"ward.dev/ward/internal/config"
	"ward.dev/ward/internal/store"
	"ward.dev/ward/xds"
)

// meshConvergeWait bounds how long a quarantine waits for every node's ACK.
const meshConvergeWait = 10 * time.Second

// openMesh prepares the xDS control plane when mesh.enabled is set. Its
// services come from the configuration and from those added through the API.
func (s *Server) openMesh(ctx context.Context) error {
	if !s.cfg.Mesh.Enabled {
		return nil
	}
	stored, err := s.store.MeshServices(ctx)
	if err != nil {
		return err
	}
	services := toXDSServices(append(append([]config.MeshService(nil), s.cfg.Mesh.Services...), stored...))
	scope := xds.ClientScopeAll
	if s.cfg.Mesh.GRPCClientScope == "permitted" {
		scope = xds.ClientScopePermitted
	}
	m, err := xds.New(xds.Config{
		Addr:            s.cfg.Listen.XDS,
		TrustDomain:     s.cfg.TrustDomain,
		Domain:          s.cfg.Environment,
		Services:        services,
		GRPCClientScope: scope,
		Authorizer:      meshAuthorizer{s.authz},
		Issuer:          meshIssuer{s},
		Logger:          s.log,
	})
	if err != nil {
		return err
	}
	s.mesh = m
	s.authz.SetReloadCheck(s.checkMeshRules)
	return nil
}

// meshAuthorizer decides the mesh's connect requests with the enforcer and
// lists the enforcer's connect rules, so that xds decides only the pairs a
// rule can match and rejects rules naming an unknown service.
type meshAuthorizer struct{ enforcer *authz.Enforcer }

var (
	_ xds.Authorizer = meshAuthorizer{}
	_ xds.RuleLister = meshAuthorizer{}
)

func (a meshAuthorizer) Allowed(subject, domain, object, action string) bool {
	return a.enforcer.Decide(subject, domain, object, action).Allowed
}

func (a meshAuthorizer) ConnectRules(domain string) []xds.ConnectRule {
	return toXDSRules(a.enforcer.ConnectRules(domain))
}

func toXDSRules(in []authz.ConnectRule) []xds.ConnectRule {
	out := make([]xds.ConnectRule, len(in))
	for i, r := range in {
		out[i] = xds.ConnectRule{Subject: r.Subject, Object: r.Object, Source: r.Source}
	}
	return out
}

// meshStoreTimeout bounds the store read of a policy reload's service check.
const meshStoreTimeout = 5 * time.Second

// checkMeshRules rejects a candidate policy whose connect rules name a
// service the mesh does not have, before the policy is accepted. Otherwise
// the policy would reach the mesh and every build would fail until the next
// reload. It applies the rules of the xds build, which does not export its
// own check: an exact service/<spiffe-id> object must name a service, and
// so must an exact SPIFFE ID subject of such a rule. Objects ending in *
// and other objects are not checked.
func (s *Server) checkMeshRules(candidate authz.RuleSource) error {
	// meshMu keeps the catalogue from changing while it is compared.
	s.meshMu.Lock()
	defer s.meshMu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), meshStoreTimeout)
	defer cancel()
	stored, err := s.store.MeshServices(ctx)
	if err != nil {
		return fmt.Errorf("read the mesh services to check the connect rules: %w", err)
	}
	known := map[string]bool{}
	for _, svc := range append(append([]config.MeshService(nil), s.cfg.Mesh.Services...), stored...) {
		known[svc.SPIFFEID] = true
	}

	for _, r := range candidate.ConnectRules(s.cfg.Environment) {
		target, ok := strings.CutPrefix(r.Object, xds.ObjectPrefix)
		if !ok || strings.HasSuffix(target, "*") {
			continue
		}
		if !known[target] {
			return fmt.Errorf("%w: %s: object %q: no mesh service has SPIFFE ID %q; add the service or correct the line", xds.ErrUnknownService, r.Source, r.Object, target)
		}
		if strings.HasPrefix(r.Subject, "spiffe://") && !strings.HasSuffix(r.Subject, "*") && !known[r.Subject] {
			return fmt.Errorf("%w: %s: subject %q (the line's subject or a member of its role): no mesh service has this SPIFFE ID; add the service or correct the line", xds.ErrUnknownService, r.Source, r.Subject)
		}
	}
	return nil
}

// serveMesh runs the control plane and rebuilds it on every policy change.
func (s *Server) serveMesh(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen.XDS)
	if err != nil {
		return fmt.Errorf("listen on %s for xDS: %w", s.cfg.Listen.XDS, err)
	}
	versions, unsubscribe := s.authz.Subscribe()
	go func() {
		defer unsubscribe()
		s.mesh.FollowPolicy(ctx, versions)
	}()
	go func() {
		if err := s.mesh.Serve(ctx, ln); err != nil {
			s.log.Error("xDS server stopped", "error", err)
		}
	}()
	return nil
}

func toXDSServices(in []config.MeshService) []xds.Service {
	out := make([]xds.Service, 0, len(in))
	for _, m := range in {
		out = append(out, xds.Service{
			Name: m.Name, SPIFFEID: m.SPIFFEID, Kind: xds.Kind(m.Kind),
			Endpoints: m.Endpoints, AppPort: m.AppPort, LocalPort: m.LocalPort,
		})
	}
	return out
}

// meshIssuer issues the SVIDs the control plane hands to Envoy over SDS,
// each under a lease like any other certificate.
type meshIssuer struct{ s *Server }

func (m meshIssuer) IssueSVID(ctx context.Context, spiffeID string, ttl time.Duration) (certChainPEM, keyPEM []byte, expiresAt time.Time, err error) {
	return m.IssueServingSVID(ctx, spiffeID, nil, ttl)
}

// IssueServingSVID issues the ADS server's own certificate: proxyless gRPC
// peers check the host name they dial, so it carries DNS or IP SANs.
func (m meshIssuer) IssueServingSVID(ctx context.Context, spiffeID string, hosts []string, ttl time.Duration) (certChainPEM, keyPEM []byte, expiresAt time.Time, err error) {
	s := m.s
	var (
		dns []string
		ips []net.IP
	)
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else if h != "" {
			dns = append(dns, h)
		}
	}
	id, msg := s.parseSPIFFEID(spiffeID)
	if id == nil {
		return nil, nil, time.Time{}, errors.New(msg)
	}
	if reason := s.sealedReason(); reason != "" {
		return nil, nil, time.Time{}, fmt.Errorf("sealed: %s", reason)
	}
	key, err := newP256Key()
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	issued, err := s.ca.Sign(ca.Request{PublicKey: key.Public(), SPIFFEID: id, DNSNames: dns, IPs: ips, TTL: ttl})
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	leaseID, err := newLeaseID("x509/" + id.String())
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	l := store.Lease{
		ID: leaseID, Kind: "x509", Object: "x509/" + id.String(), Subject: id.String(), Serial: ca.SerialHex(issued.Cert),
		IssuedAt: issued.Cert.NotBefore, ExpiresAt: issued.Cert.NotAfter, MaxExpiresAt: issued.Cert.NotAfter,
		Meta: map[string]string{"issued_for": "sds"},
	}
	if err := s.leases.Create(ctx, l); err != nil {
		return nil, nil, time.Time{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	defer clear(der)
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issued.DER})
	return chain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), issued.Cert.NotAfter, nil
}

func (m meshIssuer) TrustBundlePEM() []byte { return m.s.caPEM }

func (s *Server) handleMeshStatus(req *request) (any, *apiError) {
	req.rec.Object = "mesh"
	if err := s.require(req, "mesh", "read"); err != nil {
		return nil, err
	}
	if s.mesh == nil {
		return nil, errorf(http.StatusNotFound, "the mesh is not enabled on this server (mesh.enabled)")
	}
	return s.mesh.Status(), nil
}

func (s *Server) handleMeshServices(req *request) (any, *apiError) {
	req.rec.Object = "mesh"
	if err := s.require(req, "mesh", "read"); err != nil {
		return nil, err
	}
	if s.mesh == nil {
		return nil, errorf(http.StatusNotFound, "the mesh is not enabled on this server (mesh.enabled)")
	}
	stored, err := s.store.MeshServices(req.r.Context())
	if err != nil {
		return nil, unavailable("store unavailable", err)
	}
	all := append(append([]config.MeshService(nil), s.cfg.Mesh.Services...), stored...)
	return map[string]any{"services": all}, nil
}

// handleMeshServiceAdd adds or replaces a service added through the API.
// The new catalogue is validated and built before it is stored.
func (s *Server) handleMeshServiceAdd(req *request) (any, *apiError) {
	var svc config.MeshService
	if err := decode(req.r, &svc); err != nil {
		return nil, err
	}
	return s.changeMeshServices(req, svc.Name, &svc)
}

func (s *Server) handleMeshServiceRemove(req *request) (any, *apiError) {
	return s.changeMeshServices(req, req.r.PathValue("name"), nil)
}

func (s *Server) changeMeshServices(req *request, name string, add *config.MeshService) (any, *apiError) {
	req.rec.Object = "mesh/service/" + name
	if err := s.require(req, "mesh", "write"); err != nil {
		return nil, err
	}
	if s.mesh == nil {
		return nil, errorf(http.StatusNotFound, "the mesh is not enabled on this server (mesh.enabled)")
	}
	for _, c := range s.cfg.Mesh.Services {
		if c.Name == name {
			return nil, errorf(http.StatusConflict, "service %s comes from the configuration file; change it there", quote(name))
		}
	}

	if add != nil && add.SPIFFEID == s.adminID {
		return nil, errorf(http.StatusBadRequest, "a mesh service cannot take the admin identity %s", s.adminID)
	}

	s.meshMu.Lock()
	defer s.meshMu.Unlock()
	ctx := req.r.Context()
	stored, err := s.store.MeshServices(ctx)
	if err != nil {
		return nil, unavailable("store unavailable", err)
	}
	next := make([]config.MeshService, 0, len(stored)+1)
	found := false
	for _, m := range stored {
		if m.Name == name {
			found = true
			continue
		}
		next = append(next, m)
	}
	if add != nil {
		next = append(next, *add)
	} else if !found {
		return nil, errorf(http.StatusNotFound, "no service %s was added through the API", quote(name))
	}

	all := append(append([]config.MeshService(nil), s.cfg.Mesh.Services...), next...)
	if err := s.mesh.SetServices(ctx, toXDSServices(all)); err != nil {
		return nil, errorf(http.StatusBadRequest, "service catalogue rejected, the pushed configuration is unchanged: %v", err)
	}
	if add != nil {
		err = s.store.PutMeshService(ctx, *add)
	} else {
		err = s.store.DeleteMeshService(ctx, name)
	}
	if err != nil {
		return nil, unavailable("store unavailable; the change is live until restart", err)
	}
	return map[string]any{"services": all}, nil
}
