package xds

import (
	"fmt"
	"net/netip"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// GRPCServerListenerTemplate is the server_listener_resource_name_template
// that proxyless gRPC servers must carry in their bootstrap: gRPC replaces %s
// with the "ip:port" it listens on and requests that listener.
const GRPCServerListenerTemplate = "grpc/server?xds.resource.listening_address=%s"

// CertProviderInstance is the certificate-provider instance name that gRPC
// resources reference. The gRPC bootstrap must define it, normally as a
// file_watcher provider over the SVID, key and trust bundle files.
const CertProviderInstance = "ward"

// grpcClient is the client-side resource chain for one target service. It
// does not depend on the caller, so one copy is shared by every node.
type grpcClient struct {
	listener *listenerv3.Listener
	route    *routev3.RouteConfiguration
	cluster  *clusterv3.Cluster
	cla      *endpointv3.ClusterLoadAssignment
}

func newGRPCClient(target *Service) (*grpcClient, error) {
	cla, err := loadAssignment(target.Name, target.Endpoints)
	if err != nil {
		return nil, err
	}
	return &grpcClient{
		listener: grpcClientListener(target.Name),
		route:    grpcRoute(target.Name),
		cluster:  grpcCluster(target),
		cla:      cla,
	}, nil
}

// renderGRPC returns a proxyless gRPC node's resources: a server listener for
// each of its endpoints, admitting only callers, and the client resources of
// targets.
//
// Differences from the Envoy rendering, forced by what gRPC-Go's xDS client
// accepts (grpc-go v1.85, internal/xds/xdsclient/xdsresource):
//   - certificates come from certificate-provider instances, not SDS;
//   - tls_params is rejected, so TLS 1.3 cannot be required from xDS and the
//     gRPC process keeps its own minimum (TLS 1.2 in grpc-go);
//   - RBAC policies with a condition are rejected; ward emits only
//     principal_name matches, which gRPC checks against the peer's URI SAN.
func renderGRPC(svc *Service, targets []*grpcClient, callers []string) (map[resource.Type][]types.Resource, error) {
	out := map[resource.Type][]types.Resource{}

	rules := connectRules(callers)
	for _, ep := range svc.Endpoints {
		ap, err := netip.ParseAddrPort(ep)
		if err != nil {
			return nil, fmt.Errorf("service %q: endpoint %q: %w", svc.Name, ep, err)
		}
		out[resource.ListenerType] = append(out[resource.ListenerType], grpcServerListener(ap, rules))
	}

	for _, c := range targets {
		out[resource.ListenerType] = append(out[resource.ListenerType], c.listener)
		out[resource.RouteType] = append(out[resource.RouteType], c.route)
		out[resource.ClusterType] = append(out[resource.ClusterType], c.cluster)
		out[resource.EndpointType] = append(out[resource.EndpointType], c.cla)
	}
	return out, nil
}

func grpcServerListener(ap netip.AddrPort, rules *rbacv3.RBAC) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "inbound",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "inbound",
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    "inbound",
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
				}},
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: filterHTTPRBAC, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&httprbacv3.RBAC{Rules: rules})}},
			{Name: filterRouter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}},
		},
	}

	tlsCtx := &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: CertProviderInstance},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: CertProviderInstance},
			}},
		},
	}

	return &listenerv3.Listener{
		Name:    fmt.Sprintf(GRPCServerListenerTemplate, ap.String()),
		Address: socketAddress(ap.Addr().String(), uint32(ap.Port())),
		FilterChains: []*listenerv3.FilterChain{{
			Name: "inbound-mtls",
			Filters: []*listenerv3.Filter{{
				Name:       filterHCM,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
			}},
			TransportSocket: &corev3.TransportSocket{
				Name:       transportSocketTLS,
				ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(tlsCtx)},
			},
		}},
	}
}

func grpcClientListener(name string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: name,
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: filterRouter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}},
		},
	}
	return &listenerv3.Listener{
		Name:        name,
		ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(hcm)},
	}
}

func grpcRoute(name string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{name},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name},
				}},
			}},
		}},
	}
}

func grpcCluster(target *Service) *clusterv3.Cluster {
	tlsCtx := &tlsv3.UpstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: CertProviderInstance},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: CertProviderInstance},
				// The server must present the target's SPIFFE ID, so a
				// redirected endpoint cannot impersonate it.
				MatchSubjectAltNames: []*matcherv3.StringMatcher{exact(target.SPIFFEID)},
			}},
		},
	}
	return &clusterv3.Cluster{
		Name:                 target.Name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: target.Name},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		TransportSocket: &corev3.TransportSocket{
			Name:       transportSocketTLS,
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(tlsCtx)},
		},
	}
}

// loadAssignment lists endpoints in one locality. The locality weight is set
// because gRPC ignores localities whose weight is zero.
func loadAssignment(name string, endpoints []string) (*endpointv3.ClusterLoadAssignment, error) {
	lbs := make([]*endpointv3.LbEndpoint, 0, len(endpoints))
	for _, ep := range endpoints {
		ap, err := netip.ParseAddrPort(ep)
		if err != nil {
			return nil, fmt.Errorf("service %q: endpoint %q: %w", name, ep, err)
		}
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: socketAddress(ap.Addr().String(), uint32(ap.Port())),
		}}})
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			Locality:            &corev3.Locality{},
			LoadBalancingWeight: wrapperspb.UInt32(1),
			LbEndpoints:         lbs,
		}},
	}, nil
}
