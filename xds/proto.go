package xds

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Well-known names of the extensions ward configures.
const (
	filterHCM          = "envoy.filters.network.http_connection_manager"
	filterNetworkRBAC  = "envoy.filters.network.rbac"
	filterTCPProxy     = "envoy.filters.network.tcp_proxy"
	filterHTTPRBAC     = "envoy.filters.http.rbac"
	filterRouter       = "envoy.filters.http.router"
	transportSocketTLS = "envoy.transport_sockets.tls"
	rbacPolicyConnect  = "connect"
)

var deterministic = proto.MarshalOptions{Deterministic: true}

// mustAny packs m into an Any with deterministic encoding, so equal
// configuration always yields equal bytes and an equal version hash.
// Marshalling a well-formed message built in this package cannot fail.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, deterministic); err != nil {
		panic("xds: marshal " + string(m.ProtoReflect().Descriptor().FullName()) + ": " + err.Error())
	}
	return a
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

// connectRules is the RBAC rule set admitting exactly callers. With no
// callers the ALLOW action has no policy and so admits nobody: Rules is never
// left nil, because a nil Rules disables RBAC in Envoy and gRPC alike.
func connectRules(callers []string) *rbacv3.RBAC {
	rules := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{}}
	if len(callers) == 0 {
		return rules
	}

	principals := make([]*rbacv3.Principal, 0, len(callers))
	for _, id := range callers {
		principals = append(principals, &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{
			Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: exact(id)},
		}})
	}
	rules.Policies[rbacPolicyConnect] = &rbacv3.Policy{
		Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
		Principals:  principals,
	}
	return rules
}
