package xds

import (
	"context"
	"errors"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// TestBuildRejectsOpenListener checks that a listener whose RBAC would admit
// everyone never passes the build, whatever produced it.
func TestBuildRejectsOpenListener(t *testing.T) {
	tests := []struct {
		name    string
		node    string
		edit    func(l *listenerv3.Listener)
		wantMsg string
	}{
		{
			name: "gRPC RBAC rules unset",
			node: testID("b"),
			edit: func(l *listenerv3.Listener) {
				editHCM(l, func(hcm *hcmv3.HttpConnectionManager) {
					hcm.HttpFilters[0].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&httprbacv3.RBAC{})}
				})
			},
			wantMsg: "not an enforcing RBAC filter",
		},
		{
			name: "gRPC RBAC in LOG mode",
			node: testID("b"),
			edit: func(l *listenerv3.Listener) {
				editHCM(l, func(hcm *hcmv3.HttpConnectionManager) {
					hcm.HttpFilters[0].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&httprbacv3.RBAC{Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_LOG}})}
				})
			},
			wantMsg: "not an enforcing RBAC filter",
		},
		{
			name: "gRPC RBAC filter removed",
			node: testID("b"),
			edit: func(l *listenerv3.Listener) {
				editHCM(l, func(hcm *hcmv3.HttpConnectionManager) { hcm.HttpFilters = hcm.HttpFilters[1:] })
			},
			wantMsg: "not an enforcing RBAC filter",
		},
		{
			name: "Envoy network RBAC removed",
			node: testID("c"),
			edit: func(l *listenerv3.Listener) {
				l.FilterChains[0].Filters = l.FilterChains[0].Filters[1:]
			},
			wantMsg: "tcp_proxy without a preceding enforcing RBAC filter",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Config{TrustDomain: testTD, Services: threeServices(), Authorizer: newFakeAuthz([2]string{testID("a"), testID("b")}), Issuer: newTestCA(t)})
			if err != nil {
				t.Fatal(err)
			}
			s.mutate = func(node string, res map[resource.Type][]types.Resource) {
				if node != tt.node {
					return
				}
				for i, r := range res[resource.ListenerType] {
					l := r.(*listenerv3.Listener)
					if len(l.GetFilterChains()) == 0 {
						continue
					}
					l = proto.Clone(l).(*listenerv3.Listener)
					tt.edit(l)
					res[resource.ListenerType][i] = l
				}
			}
			err = s.Rebuild(context.Background())
			if !errors.Is(err, ErrInvalidSnapshot) {
				t.Fatalf("Rebuild() = %v, want ErrInvalidSnapshot", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Rebuild() = %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

func editHCM(l *listenerv3.Listener, edit func(*hcmv3.HttpConnectionManager)) {
	f := l.FilterChains[0].Filters[0]
	hcm := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		panic(err)
	}
	edit(hcm)
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}
}
