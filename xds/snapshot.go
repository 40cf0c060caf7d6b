package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// ErrInvalidSnapshot wraps every reason a rendered snapshot is not pushed.
var ErrInvalidSnapshot = errors.New("invalid snapshot")

// resourceTypes are the types ward serves, in the order Envoy applies them.
var resourceTypes = []resource.Type{
	resource.ClusterType,
	resource.EndpointType,
	resource.ListenerType,
	resource.RouteType,
	resource.SecretType,
}

// typeSet is one resource type's content for a node, with its version: a
// hash of the content, so equal content always has an equal version.
type typeSet struct {
	version string
	items   []types.Resource
}

// nodeSet is a node's complete configuration, indexed by type URL.
type nodeSet map[resource.Type]typeSet

// digests caches the validation and hash of resources shared by many
// nodes, keyed by pointer. Shared resources are never modified after
// rendering. It is used by one build at a time.
type digests map[types.Resource][sha256.Size]byte

// digest validates r and returns the hash of its deterministic encoding,
// from d when r was seen before.
func (d digests) digest(r types.Resource) ([sha256.Size]byte, error) {
	if sum, ok := d[r]; ok {
		return sum, nil
	}
	if err := validate(r); err != nil {
		return [sha256.Size]byte{}, err
	}
	b, err := deterministic.Marshal(hashable(r))
	if err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("%w: marshal %q: %w", ErrInvalidSnapshot, cache.GetResourceName(r), err)
	}
	sum := sha256.Sum256(b)
	if d != nil {
		d[r] = sum
	}
	return sum, nil
}

// buildSet validates every resource, sorts them by name, and computes the
// version of each type from the resources' digests. d may be nil.
func buildSet(res map[resource.Type][]types.Resource, d digests) (nodeSet, error) {
	out := make(nodeSet, len(resourceTypes))
	for _, typ := range resourceTypes {
		items := res[typ]
		slices.SortFunc(items, func(a, b types.Resource) int {
			return compareStrings(cache.GetResourceName(a), cache.GetResourceName(b))
		})

		h := sha256.New()
		for _, r := range items {
			sum, err := d.digest(r)
			if err != nil {
				return nil, err
			}
			h.Write(sum[:])
		}
		version := ""
		if len(items) > 0 {
			version = hex.EncodeToString(h.Sum(nil)[:8])
		}
		out[typ] = typeSet{version: version, items: items}
	}

	if err := checkConsistent(out); err != nil {
		return nil, err
	}
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type validatorAll interface{ ValidateAll() error }

func validate(r types.Resource) error {
	v, ok := r.(validatorAll)
	if !ok {
		return fmt.Errorf("%w: %T has no validation", ErrInvalidSnapshot, r)
	}
	if err := v.ValidateAll(); err != nil {
		return fmt.Errorf("%w: %T %q: %w", ErrInvalidSnapshot, r, cache.GetResourceName(r), err)
	}
	return nil
}

// hashable returns what goes into r's version hash. An SDS certificate
// secret is hashed without its private key, so no function of the key leaves
// the process: a new key always arrives with a new certificate.
func hashable(r types.Resource) types.Resource {
	if s, ok := r.(*tlsv3.Secret); ok && s.GetTlsCertificate() != nil {
		return &tlsv3.Secret{Name: s.GetName(), Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: s.GetTlsCertificate().GetCertificateChain(),
		}}}
	}
	return r
}

// snapshot converts a node set into a go-control-plane snapshot with one
// version per type.
func (ns nodeSet) snapshot() *cache.Snapshot {
	s := &cache.Snapshot{}
	for typ, set := range ns {
		s.Resources[cache.GetResponseType(typ)] = cache.NewResources(set.version, set.items)
	}
	return s
}

// checkConsistent runs go-control-plane's consistency check (every EDS and
// RDS name referenced exists, and nothing unreferenced) and ward's own: every
// route, TCP proxy and SDS reference names an existing resource.
func checkConsistent(ns nodeSet) error {
	// go-control-plane v0.14 counts RDS references from filter chains only,
	// not from the api_listener that gRPC client listeners use. Routes named
	// by api listeners are checked here and left out of Consistent.
	apiRoutes, err := apiListenerRoutes(ns[resource.ListenerType].items)
	if err != nil {
		return err
	}
	routes := names(ns[resource.RouteType].items)
	for name := range apiRoutes {
		if !routes[name] {
			return fmt.Errorf("%w: api listener %q names route %q, which is not in the snapshot", ErrInvalidSnapshot, name, name)
		}
	}
	rest := maps.Clone(ns)
	rest[resource.RouteType] = typeSet{version: ns[resource.RouteType].version, items: slices.DeleteFunc(slices.Clone(ns[resource.RouteType].items), func(r types.Resource) bool {
		return apiRoutes[cache.GetResourceName(r)]
	})}
	if err := rest.snapshot().Consistent(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSnapshot, err)
	}

	clusters := names(ns[resource.ClusterType].items)
	secrets := names(ns[resource.SecretType].items)
	for _, r := range ns[resource.RouteType].items {
		if err := checkRoutes(r.(*routev3.RouteConfiguration), clusters); err != nil {
			return err
		}
	}
	for _, r := range ns[resource.ListenerType].items {
		if err := checkListener(r.(*listenerv3.Listener), clusters, secrets); err != nil {
			return err
		}
	}
	for _, r := range ns[resource.ClusterType].items {
		if err := checkTransportSecrets(r.(*clusterv3.Cluster).GetTransportSocket().GetTypedConfig(), secrets, "cluster "+cache.GetResourceName(r)); err != nil {
			return err
		}
	}
	return nil
}

func names(items []types.Resource) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, r := range items {
		m[cache.GetResourceName(r)] = true
	}
	return m
}

func checkRoutes(rc *routev3.RouteConfiguration, clusters map[string]bool) error {
	for _, vh := range rc.GetVirtualHosts() {
		for _, rt := range vh.GetRoutes() {
			name := rt.GetRoute().GetCluster()
			if rt.GetRoute() != nil && !clusters[name] {
				return fmt.Errorf("%w: route %q virtual host %q names cluster %q, which is not in the snapshot", ErrInvalidSnapshot, rc.GetName(), vh.GetName(), name)
			}
		}
	}
	return nil
}

func checkListener(l *listenerv3.Listener, clusters, secrets map[string]bool) error {
	where := "listener " + l.GetName()
	for _, fc := range l.GetFilterChains() {
		if err := checkTransportSecrets(fc.GetTransportSocket().GetTypedConfig(), secrets, where); err != nil {
			return err
		}
		for _, f := range fc.GetFilters() {
			msg, err := f.GetTypedConfig().UnmarshalNew()
			if err != nil {
				return fmt.Errorf("%w: %s filter %q: %w", ErrInvalidSnapshot, where, f.GetName(), err)
			}
			switch cfg := msg.(type) {
			case *tcpproxyv3.TcpProxy:
				if !clusters[cfg.GetCluster()] {
					return fmt.Errorf("%w: %s: tcp_proxy names cluster %q, which is not in the snapshot", ErrInvalidSnapshot, where, cfg.GetCluster())
				}
			case *hcmv3.HttpConnectionManager:
				if rc := cfg.GetRouteConfig(); rc != nil {
					if err := checkRoutes(rc, clusters); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// checkTransportSecrets checks that every SDS secret a TLS context names is
// in the snapshot.
func checkTransportSecrets(cfg *anypb.Any, secrets map[string]bool, where string) error {
	if cfg == nil {
		return nil
	}
	msg, err := cfg.UnmarshalNew()
	if err != nil {
		return fmt.Errorf("%w: %s transport socket: %w", ErrInvalidSnapshot, where, err)
	}
	var common *tlsv3.CommonTlsContext
	switch t := msg.(type) {
	case *tlsv3.DownstreamTlsContext:
		common = t.GetCommonTlsContext()
	case *tlsv3.UpstreamTlsContext:
		common = t.GetCommonTlsContext()
	}
	refs := []string{common.GetValidationContextSdsSecretConfig().GetName(), common.GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName()}
	for _, s := range common.GetTlsCertificateSdsSecretConfigs() {
		refs = append(refs, s.GetName())
	}
	for _, name := range refs {
		if name != "" && !secrets[name] {
			return fmt.Errorf("%w: %s names SDS secret %q, which is not in the snapshot", ErrInvalidSnapshot, where, name)
		}
	}
	return nil
}

// apiListenerRoutes returns the RDS route names that api listeners use,
// keyed by route name.
func apiListenerRoutes(listeners []types.Resource) (map[string]bool, error) {
	out := map[string]bool{}
	for _, r := range listeners {
		l := r.(*listenerv3.Listener)
		if l.GetApiListener() == nil {
			continue
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if err := l.GetApiListener().GetApiListener().UnmarshalTo(hcm); err != nil {
			return nil, fmt.Errorf("%w: api listener %q: %w", ErrInvalidSnapshot, l.GetName(), err)
		}
		if name := hcm.GetRds().GetRouteConfigName(); name != "" {
			out[name] = true
		}
	}
	return out, nil
}
