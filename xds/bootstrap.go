package xds

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// GRPCBootstrap describes a proxyless gRPC peer's xDS bootstrap. The same
// SVID files serve both the mTLS channel to ward and, through the
// file_watcher certificate provider named CertProviderInstance, the peer's
// own server and client handshakes.
type GRPCBootstrap struct {
	ServerURI string // ward's ADS address, for example "127.0.0.1:18000"
	NodeID    string // the peer's SPIFFE ID, equal to its certificate's URI SAN
	CertFile  string // PEM certificate chain of the SVID
	KeyFile   string // PEM private key of the SVID
	CAFile    string // PEM trust bundle
	// Refresh is how often gRPC rereads the files, ten minutes when zero
	// (grpc-go's file_watcher default).
	Refresh time.Duration
}

// JSON returns the bootstrap document gRPC reads from GRPC_XDS_BOOTSTRAP,
// GRPC_XDS_BOOTSTRAP_CONFIG or, in tests, xds.BootstrapContentsForTesting.
func (b GRPCBootstrap) JSON() ([]byte, error) {
	if b.ServerURI == "" || b.NodeID == "" || b.CertFile == "" || b.KeyFile == "" || b.CAFile == "" {
		return nil, errors.New("xds: GRPCBootstrap needs ServerURI, NodeID, CertFile, KeyFile and CAFile")
	}
	files := map[string]any{
		"certificate_file":    b.CertFile,
		"private_key_file":    b.KeyFile,
		"ca_certificate_file": b.CAFile,
	}
	watcher := map[string]any{}
	for k, v := range files {
		watcher[k] = v
	}
	if b.Refresh > 0 {
		// A Duration in proto JSON form: decimal seconds with an "s" suffix.
		watcher["refresh_interval"] = strconv.FormatFloat(b.Refresh.Seconds(), 'f', -1, 64) + "s"
	}
	doc := map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      b.ServerURI,
			"channel_creds":   []any{map[string]any{"type": "tls", "config": files}},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{"id": b.NodeID},
		"certificate_providers": map[string]any{
			CertProviderInstance: map[string]any{"plugin_name": "file_watcher", "config": watcher},
		},
		"server_listener_resource_name_template": GRPCServerListenerTemplate,
	}
	return json.MarshalIndent(doc, "", "  ")
}
