package xds

import (
	"fmt"
	"net/netip"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// SDS secret names and fixed resource names in Envoy snapshots.
const (
	SecretSVID        = "ward-svid"
	SecretTrustBundle = "ward-trust-bundle"
	listenerInbound   = "inbound"
	clusterLocalApp   = "local-app"
	outboundPrefix    = "outbound|"
	connectTimeout    = 5 * time.Second
)

// svid is an issued X.509-SVID. key is private key material: it goes into
// the SDS secret only and is never logged or hashed.
type svid struct {
	chain []byte
	key   []byte
}

// renderEnvoy returns an Envoy sidecar's resources: the inbound mTLS
// listener admitting only callers, the local application cluster, an
// outbound cluster and endpoints per permitted upstream, and the SDS
// secrets holding its SVID and the trust bundle.
func renderEnvoy(svc *Service, upstreams []*Service, callers []string, cert svid, bundle []byte) (map[resource.Type][]types.Resource, error) {
	out := map[resource.Type][]types.Resource{}

	ap, err := netip.ParseAddrPort(svc.Endpoints[0])
	if err != nil {
		return nil, fmt.Errorf("service %q: endpoint %q: %w", svc.Name, svc.Endpoints[0], err)
	}
	out[resource.ListenerType] = []types.Resource{envoyInbound(uint32(ap.Port()), callers)}
	out[resource.ClusterType] = []types.Resource{localAppCluster(svc.AppPort)}

	for _, up := range upstreams {
		name := outboundPrefix + up.Name
		out[resource.ClusterType] = append(out[resource.ClusterType], envoyOutbound(name, up.SPIFFEID))
		if up.LocalPort != 0 {
			out[resource.ListenerType] = append(out[resource.ListenerType], envoyOutboundListener(name, up.LocalPort))
		}
		cla, err := loadAssignment(name, up.Endpoints)
		if err != nil {
			return nil, err
		}
		out[resource.EndpointType] = append(out[resource.EndpointType], cla)
	}

	out[resource.SecretType] = []types.Resource{
		&tlsv3.Secret{Name: SecretSVID, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(cert.chain),
			PrivateKey:       inline(cert.key),
		}}},
		&tlsv3.Secret{Name: SecretTrustBundle, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(bundle),
		}}},
	}
	return out, nil
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

func tls13() *tlsv3.TlsParameters {
	return &tlsv3.TlsParameters{
		TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3,
		TlsMaximumProtocolVersion: tlsv3.TlsParameters_TLSv1_3,
	}
}

func sdsSecret(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsSource()}
}

// envoyInbound listens on all interfaces because the sidecar runs on the
// workload's host, whose address Envoy does not learn from xDS.
func envoyInbound(port uint32, callers []string) *listenerv3.Listener {
	tlsCtx := &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:                      tls13(),
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(SecretSVID)},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: sdsSecret(SecretTrustBundle),
			},
		},
	}
	rbac := &netrbacv3.RBAC{StatPrefix: "inbound_rbac", Rules: connectRules(callers)}
	proxy := &tcpproxyv3.TcpProxy{
		StatPrefix:       "inbound",
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: clusterLocalApp},
	}
	return &listenerv3.Listener{
		Name:    listenerInbound,
		Address: socketAddress("0.0.0.0", port),
		FilterChains: []*listenerv3.FilterChain{{
			Name: "inbound-mtls",
			Filters: []*listenerv3.Filter{
				{Name: filterNetworkRBAC, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(rbac)}},
				{Name: filterTCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(proxy)}},
			},
			TransportSocket: &corev3.TransportSocket{
				Name:       transportSocketTLS,
				ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(tlsCtx)},
			},
		}},
	}
}

// envoyOutboundListener accepts the application's plain TCP connections to
// an upstream on loopback only, and forwards them to the upstream's mTLS
// cluster. It has no RBAC filter: the upstream's inbound listener decides,
// and the cluster exists only for permitted upstreams.
func envoyOutboundListener(cluster string, port uint32) *listenerv3.Listener {
	proxy := &tcpproxyv3.TcpProxy{
		StatPrefix:       cluster,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
	}
	return &listenerv3.Listener{
		Name:    cluster,
		Address: socketAddress("127.0.0.1", port),
		FilterChains: []*listenerv3.FilterChain{{
			Name: "outbound",
			Filters: []*listenerv3.Filter{
				{Name: filterTCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(proxy)}},
			},
		}},
	}
}

func localAppCluster(port uint32) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 clusterLocalApp,
		ConnectTimeout:       durationpb.New(connectTimeout),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: clusterLocalApp,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: socketAddress("127.0.0.1", port),
				}},
			}}}},
		},
	}
}

func envoyOutbound(name, upstreamID string) *clusterv3.Cluster {
	tlsCtx := &tlsv3.UpstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:                      tls13(),
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(SecretSVID)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext: &tlsv3.CertificateValidationContext{
					MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: tlsv3.SubjectAltNameMatcher_URI,
						Matcher: exact(upstreamID),
					}},
				},
				ValidationContextSdsSecretConfig: sdsSecret(SecretTrustBundle),
			}},
		},
	}
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(connectTimeout),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		TransportSocket: &corev3.TransportSocket{
			Name:       transportSocketTLS,
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(tlsCtx)},
		},
	}
}
