package xds

import (
	"crypto/sha256"
	"fmt"
	"net/netip"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// resourceFacts is the build's record of one validated resource: the hash
// of its encoding and the names it refers to.
type resourceFacts struct {
	digest   [sha256.Size]byte
	apiRoute string   // RDS route of a listener's api_listener
	clusters []string // clusters named by routes or tcp_proxy
	secrets  []string // SDS secrets named by TLS contexts
}

// factCache holds the facts of resources by pointer, so a resource shared
// by many nodes is validated, hashed and parsed once per build. Resources
// are never modified after rendering. A nil factCache computes every time.
type factCache map[types.Resource]*resourceFacts

func (f factCache) get(r types.Resource) (*resourceFacts, error) {
	if facts, ok := f[r]; ok {
		return facts, nil
	}
	facts, err := learn(r)
	if err != nil {
		return nil, err
	}
	if f != nil {
		f[r] = facts
	}
	return facts, nil
}

func learn(r types.Resource) (*resourceFacts, error) {
	if err := validate(r); err != nil {
		return nil, err
	}
	b, err := deterministic.Marshal(hashable(r))
	if err != nil {
		return nil, fmt.Errorf("%w: marshal %q: %w", ErrInvalidSnapshot, cache.GetResourceName(r), err)
	}
	facts := &resourceFacts{digest: sha256.Sum256(b)}

	switch v := r.(type) {
	case *listenerv3.Listener:
		err = facts.learnListener(v)
	case *clusterv3.Cluster:
		facts.secrets, err = tlsSecrets(v.GetTransportSocket().GetTypedConfig())
	case *routev3.RouteConfiguration:
		facts.clusters = routeClusters(v)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrInvalidSnapshot, cache.GetResourceName(r), err)
	}
	return facts, nil
}

func (facts *resourceFacts) learnListener(l *listenerv3.Listener) error {
	if api := l.GetApiListener().GetApiListener(); api != nil {
		hcm := &hcmv3.HttpConnectionManager{}
		if err := api.UnmarshalTo(hcm); err != nil {
			return fmt.Errorf("api listener: %w", err)
		}
		facts.apiRoute = hcm.GetRds().GetRouteConfigName()
		facts.clusters = append(facts.clusters, routeClusters(hcm.GetRouteConfig())...)
	}

	// Outbound listeners take the local application's connections on
	// loopback only, so they need no RBAC. Every other listener admits
	// remote peers and must enforce RBAC before forwarding.
	addr, _ := netip.ParseAddr(l.GetAddress().GetSocketAddress().GetAddress())
	local := addr.IsLoopback()

	for _, fc := range l.GetFilterChains() {
		secrets, err := tlsSecrets(fc.GetTransportSocket().GetTypedConfig())
		if err != nil {
			return err
		}
		facts.secrets = append(facts.secrets, secrets...)

		guarded := false // a network RBAC filter with rules came earlier
		for _, filter := range fc.GetFilters() {
			msg, err := filter.GetTypedConfig().UnmarshalNew()
			if err != nil {
				return fmt.Errorf("filter %q: %w", filter.GetName(), err)
			}
			switch cfg := msg.(type) {
			case *netrbacv3.RBAC:
				guarded = enforcing(cfg.GetRules())
			case *tcpproxyv3.TcpProxy:
				if !guarded && !local {
					return fmt.Errorf("filter chain %q: tcp_proxy without a preceding enforcing RBAC filter", fc.GetName())
				}
				facts.clusters = append(facts.clusters, cfg.GetCluster())
			case *hcmv3.HttpConnectionManager:
				if err := checkHTTPRBAC(cfg); err != nil {
					return fmt.Errorf("filter chain %q: %w", fc.GetName(), err)
				}
				facts.clusters = append(facts.clusters, routeClusters(cfg.GetRouteConfig())...)
			}
		}
	}
	return nil
}

// enforcing reports whether RBAC rules restrict anything. Unset rules, or
// the LOG action, turn RBAC off in Envoy and gRPC alike, so an inbound
// listener rendered that way would admit every caller.
func enforcing(rules *rbacv3.RBAC) bool {
	return rules != nil && rules.GetAction() != rbacv3.RBAC_LOG
}

// checkHTTPRBAC requires an inbound HTTP connection manager to start with an
// enforcing RBAC filter, so no route is reachable around it.
func checkHTTPRBAC(hcm *hcmv3.HttpConnectionManager) error {
	filters := hcm.GetHttpFilters()
	if len(filters) == 0 {
		return fmt.Errorf("http connection manager has no filters")
	}
	rbac := &httprbacv3.RBAC{}
	if filters[0].GetTypedConfig().MessageIs(rbac) {
		if err := filters[0].GetTypedConfig().UnmarshalTo(rbac); err != nil {
			return fmt.Errorf("http filter %q: %w", filters[0].GetName(), err)
		}
		if enforcing(rbac.GetRules()) {
			return nil
		}
	}
	return fmt.Errorf("first http filter %q is not an enforcing RBAC filter", filters[0].GetName())
}

// routeClusters lists the clusters that rc's routes forward to. Routes with
// a non-forwarding action name none.
func routeClusters(rc *routev3.RouteConfiguration) []string {
	var out []string
	for _, vh := range rc.GetVirtualHosts() {
		for _, rt := range vh.GetRoutes() {
			if action := rt.GetRoute(); action != nil {
				out = append(out, action.GetCluster())
			}
		}
	}
	return out
}

// tlsSecrets lists the SDS secrets a transport socket's TLS context names.
func tlsSecrets(cfg *anypb.Any) ([]string, error) {
	if cfg == nil {
		return nil, nil
	}
	msg, err := cfg.UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("transport socket: %w", err)
	}
	var common *tlsv3.CommonTlsContext
	switch t := msg.(type) {
	case *tlsv3.DownstreamTlsContext:
		common = t.GetCommonTlsContext()
	case *tlsv3.UpstreamTlsContext:
		common = t.GetCommonTlsContext()
	}

	var out []string
	for _, s := range common.GetTlsCertificateSdsSecretConfigs() {
		out = append(out, s.GetName())
	}
	for _, name := range []string{
		common.GetValidationContextSdsSecretConfig().GetName(),
		common.GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName(),
	} {
		if name != "" {
			out = append(out, name)
		}
	}
	return out, nil
}
