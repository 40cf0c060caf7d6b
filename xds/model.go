package xds

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Kind is the data plane a service runs.
type Kind string

// The supported data planes.
const (
	KindEnvoy Kind = "envoy" // an Envoy sidecar in front of the application
	KindGRPC  Kind = "grpc"  // a proxyless gRPC application with an xDS client
)

// Service is one workload in the mesh.
type Service struct {
	// Name is the xDS target name: gRPC clients dial "xds:///<Name>".
	Name string
	// SPIFFEID is the workload's identity, its certificate's URI SAN and its
	// xDS node id.
	SPIFFEID string
	Kind     Kind
	// Endpoints are the "ip:port" addresses the service accepts connections
	// on: the gRPC server's listening address, or the Envoy inbound listener.
	Endpoints []string
	// AppPort is the loopback port of the application behind an Envoy
	// sidecar. It is unused for gRPC services.
	AppPort uint32
	// LocalPort, when not zero, is the loopback port on which the Envoy
	// sidecar of every permitted caller exposes this service: the caller's
	// application connects to 127.0.0.1:LocalPort in plain TCP and its
	// sidecar carries the connection over mTLS.
	LocalPort uint32
}

// Sentinel errors returned by SetServices and the policy check.
var (
	ErrInvalidService = errors.New("invalid service")
	ErrUnknownService = errors.New("policy names an unknown service")
)

var serviceName = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// validateServices checks every service on its own and the set for
// duplicate names and SPIFFE IDs. Services must belong to trustDomain.
func validateServices(services []Service, trustDomain spiffeid.TrustDomain) error {
	names := make(map[string]bool, len(services))
	ids := make(map[string]bool, len(services))
	if err := checkLocalPorts(services); err != nil {
		return err
	}
	for i, svc := range services {
		if err := validateService(svc, trustDomain); err != nil {
			return fmt.Errorf("%w: services[%d] %q: %w", ErrInvalidService, i, svc.Name, err)
		}

		if names[svc.Name] {
			return fmt.Errorf("%w: services[%d]: duplicate name %q", ErrInvalidService, i, svc.Name)
		}
		names[svc.Name] = true

		if ids[svc.SPIFFEID] {
			return fmt.Errorf("%w: services[%d] %q: duplicate SPIFFE ID %q", ErrInvalidService, i, svc.Name, svc.SPIFFEID)
		}
		ids[svc.SPIFFEID] = true
	}
	return nil
}

func validateService(svc Service, trustDomain spiffeid.TrustDomain) error {
	if !serviceName.MatchString(svc.Name) {
		return fmt.Errorf("name %q is not a lowercase DNS name of at most 63 characters", svc.Name)
	}

	id, err := spiffeid.FromString(svc.SPIFFEID)
	if err != nil {
		return fmt.Errorf("SPIFFE ID %q: %w", svc.SPIFFEID, err)
	}
	if id.TrustDomain() != trustDomain {
		return fmt.Errorf("SPIFFE ID %q is outside trust domain %q", svc.SPIFFEID, trustDomain)
	}

	if svc.Kind != KindEnvoy && svc.Kind != KindGRPC {
		return fmt.Errorf("kind %q is invalid, want %q or %q", svc.Kind, KindEnvoy, KindGRPC)
	}

	if len(svc.Endpoints) == 0 {
		return errors.New("no endpoints")
	}
	var firstPort uint16
	for j, ep := range svc.Endpoints {
		ap, err := netip.ParseAddrPort(ep)
		if err != nil {
			return fmt.Errorf("endpoints[%d] %q is not ip:port: %w", j, ep, err)
		}
		if ap.Addr().Zone() != "" || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() {
			return fmt.Errorf("endpoints[%d] %q: want a unicast address without zone that peers can connect to", j, ep)
		}
		if ap.Port() == 0 {
			return fmt.Errorf("endpoints[%d] %q: port 0 is invalid, want 1-65535", j, ep)
		}
		if j == 0 {
			firstPort = ap.Port()
		}
		// An Envoy sidecar binds one inbound listener, so its replicas
		// must share the port.
		if svc.Kind == KindEnvoy && ap.Port() != firstPort {
			return fmt.Errorf("endpoints[%d] %q: envoy endpoints must share port %d", j, ep, firstPort)
		}
	}

	if svc.Kind == KindEnvoy && (svc.AppPort == 0 || svc.AppPort > 65535) {
		return fmt.Errorf("app port %d is invalid, want 1-65535", svc.AppPort)
	}
	return nil
}

// checkLocalPorts rejects a LocalPort that another service also uses, or
// that an Envoy sidecar already binds for its inbound listener or its
// application, since a sidecar could then not bind its outbound listener.
func checkLocalPorts(services []Service) error {
	taken := map[uint32]string{}
	for _, svc := range services {
		if svc.Kind != KindEnvoy {
			continue
		}
		taken[svc.AppPort] = fmt.Sprintf("app port of %q", svc.Name)
		if ap, err := netip.ParseAddrPort(first(svc.Endpoints)); err == nil {
			taken[uint32(ap.Port())] = fmt.Sprintf("inbound port of %q", svc.Name)
		}
	}
	for i, svc := range services {
		if svc.LocalPort == 0 {
			continue
		}
		if svc.LocalPort > 65535 {
			return fmt.Errorf("%w: services[%d] %q: local port %d is invalid, want 1-65535", ErrInvalidService, i, svc.Name, svc.LocalPort)
		}
		if use, ok := taken[svc.LocalPort]; ok {
			return fmt.Errorf("%w: services[%d] %q: local port %d is already the %s", ErrInvalidService, i, svc.Name, svc.LocalPort, use)
		}
		taken[svc.LocalPort] = fmt.Sprintf("local port of %q", svc.Name)
	}
	return nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// checkRules rejects connect rules that name a service which does not
// exist: an exact service object, and the SPIFFE ID subject of a rule with
// such an object. Patterns ending in "*", roles, and subjects of rules with
// wider objects (an administrator's "*") are not checked.
func checkRules(rules []ConnectRule, byID map[string]*Service) error {
	for _, r := range rules {
		target, ok := strings.CutPrefix(r.Object, ObjectPrefix)
		if !ok || strings.HasSuffix(target, "*") {
			continue
		}
		if byID[target] == nil {
			return fmt.Errorf("%w: %s: object %q: no service has SPIFFE ID %q", ErrUnknownService, r.Source, r.Object, target)
		}
		if strings.HasPrefix(r.Subject, "spiffe://") && !strings.HasSuffix(r.Subject, "*") && byID[r.Subject] == nil {
			return fmt.Errorf("%w: %s: subject %q: no service has this SPIFFE ID", ErrUnknownService, r.Source, r.Subject)
		}
	}
	return nil
}

// graph is the decided connect permissions: for each target SPIFFE ID, the
// sorted SPIFFE IDs allowed to connect to it, and the reverse.
type graph struct {
	callers   map[string][]string
	upstreams map[string][]string
}

// decide queries the authorizer about candidate (caller, target) pairs. With
// rules (from a RuleLister) the candidates are the pairs some allow rule
// could match, so the cost follows the policy's size. Without rules it is
// every ordered pair, len(services)² decisions. Every candidate is still
// decided by the authorizer, so deny rules, roles and quarantine apply.
func decide(services []Service, authz Authorizer, domain string, quarantined map[string]bool, rules []ConnectRule, haveRules bool) graph {
	g := graph{callers: map[string][]string{}, upstreams: map[string][]string{}}

	var cand map[string][]*Service
	if haveRules {
		cand = candidates(rules, services)
	}
	for i := range services {
		target := &services[i]
		if quarantined[target.SPIFFEID] {
			continue
		}
		callers := cand[target.SPIFFEID]
		if !haveRules {
			callers = make([]*Service, len(services))
			for j := range services {
				callers[j] = &services[j]
			}
		}

		object := ObjectPrefix + target.SPIFFEID
		for _, caller := range callers {
			if quarantined[caller.SPIFFEID] {
				continue
			}
			if authz.Allowed(caller.SPIFFEID, domain, object, ActionConnect) {
				g.callers[target.SPIFFEID] = append(g.callers[target.SPIFFEID], caller.SPIFFEID)
				g.upstreams[caller.SPIFFEID] = append(g.upstreams[caller.SPIFFEID], target.SPIFFEID)
			}
		}
	}
	for _, ids := range g.callers {
		slices.Sort(ids)
	}
	for _, ids := range g.upstreams {
		slices.Sort(ids)
	}
	return g
}

// candidates maps each target SPIFFE ID to the services some rule could
// let connect to it, without duplicates. A subject that is neither "*" nor
// a SPIFFE ID or SPIFFE ID pattern is a role the lister did not expand, so
// every service is a candidate for that rule's targets.
func candidates(rules []ConnectRule, services []Service) map[string][]*Service {
	byID := make(map[string]*Service, len(services))
	for i := range services {
		byID[services[i].SPIFFEID] = &services[i]
	}
	match := func(pattern string, prefix string) []*Service {
		if exact, ok := strings.CutPrefix(pattern, prefix); ok && !strings.HasSuffix(exact, "*") {
			if svc := byID[exact]; svc != nil {
				return []*Service{svc}
			}
			return nil
		}
		var out []*Service
		for i := range services {
			if matchPattern(pattern, prefix+services[i].SPIFFEID) {
				out = append(out, &services[i])
			}
		}
		return out
	}

	seen := map[[2]*Service]bool{}
	out := map[string][]*Service{}
	for _, r := range rules {
		targets := match(r.Object, ObjectPrefix)
		if len(targets) == 0 {
			continue
		}
		var callers []*Service
		if r.Subject == "*" || strings.HasPrefix(r.Subject, "spiffe://") {
			callers = match(r.Subject, "")
		} else {
			callers = match("*", "")
		}
		for _, target := range targets {
			for _, caller := range callers {
				key := [2]*Service{target, caller}
				if !seen[key] {
					seen[key] = true
					out[target.SPIFFEID] = append(out[target.SPIFFEID], caller)
				}
			}
		}
	}
	return out
}

// matchPattern matches s against a policy pattern: "*" matches everything,
// a trailing "*" matches any rest, anything else matches itself.
func matchPattern(pattern, s string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(s, prefix)
	}
	return pattern == s
}
