package agent

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
)

// SDS secret names besides each x509 credential's own name: "default" is the
// first x509 credential and "ROOTCA" the trust bundle, the names Envoy
// configurations for SPIFFE agents commonly use.
const (
	sdsDefault = "default"
	sdsRootCA  = "ROOTCA"
)

// oneNode hashes every Envoy to the same snapshot. The socket is local to
// one workload, so every client that connects gets that workload's secrets.
type oneNode struct{}

func (oneNode) ID(*corev3.Node) string { return "" }

// newSDSGRPC returns a gRPC server with Envoy's SecretDiscoveryService fed
// from the agent's credentials; a goroutine updates the snapshot on every
// change until ctx ends.
func newSDSGRPC(ctx context.Context, a *Agent) (*grpc.Server, error) {
	cache := cachev3.NewSnapshotCache(false, oneNode{}, nil)
	xds := serverv3.NewServer(ctx, cache, nil)
	srv := grpc.NewServer()
	secretv3.RegisterSecretDiscoveryServiceServer(srv, xds)

	go func() {
		version := 0
		for {
			changed := a.watch()
			if secrets := a.sdsSecrets(); len(secrets) > 0 {
				version++
				snap, err := cachev3.NewSnapshot(strconv.Itoa(version), map[resourcev3.Type][]types.Resource{resourcev3.SecretType: secrets})
				if err == nil {
					err = cache.SetSnapshot(ctx, "", snap)
				}
				if err != nil {
					a.log.Error("SDS snapshot not updated", "error", err)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
		}
	}()
	return srv, nil
}

// sdsSecrets builds Envoy secrets from the unexpired x509 credentials.
func (a *Agent) sdsSecrets() []types.Resource {
	svids := a.current("x509")
	if len(svids) == 0 {
		return nil
	}
	var out []types.Resource
	for i, c := range svids {
		keyDER, err := x509.MarshalPKCS8PrivateKey(c.key)
		if err != nil {
			a.log.Error("SDS secret skipped: key not encodable", "credential", c.name)
			continue
		}
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
		clear(keyDER)
		tlsCert := &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: c.values["cert"]}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: keyPEM}},
		}
		out = append(out, &tlsv3.Secret{Name: c.name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: tlsCert}})
		if i == 0 {
			out = append(out, &tlsv3.Secret{Name: sdsDefault, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: tlsCert}})
			out = append(out, &tlsv3.Secret{Name: sdsRootCA, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: c.values["bundle"]}},
			}}})
		}
	}
	return out
}
