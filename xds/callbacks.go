package xds

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// maxNACKMessage bounds the stored and logged text of one NACK.
const maxNACKMessage = 2048

// streamState is one ADS stream. Guarded by Server.mu.
type streamState struct {
	peer  string // SPIFFE ID from the client certificate
	node  string // node id, set once it matched peer
	delta bool
	// acked maps a type URL to the version the stream last reported
	// holding, in an ACK or in the version_info of a NACK.
	acked map[string]string
	// sent maps a type URL to the version last sent on the stream.
	sent map[string]string
	// Delta streams only: the nonce of the last response of a type not yet
	// acknowledged or rejected, and whether the type is subscribed as a
	// wildcard.
	pending  map[string]string
	wildcard map[string]bool
}

// streamKey identifies an ADS stream. go-control-plane numbers state of the
// world and delta streams separately, so an id alone is ambiguous.
type streamKey struct {
	delta bool
	id    int64
}

// callbacks connects go-control-plane's stream events to the Server: it
// binds each stream to the SPIFFE ID in its client certificate and records
// ACKs and NACKs.
type callbacks struct{ s *Server }

var _ serverv3.Callbacks = callbacks{}

func (c callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.open(ctx, id, false)
}

func (c callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.open(ctx, id, true)
}

func (c callbacks) open(ctx context.Context, id int64, delta bool) error {
	spiffeID, err := peerID(ctx)
	if err != nil {
		c.s.log.Warn("xds stream rejected", "stream", id, "error", err)
		return status.Error(codes.Unauthenticated, err.Error())
	}

	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.streams[streamKey{delta, id}] = &streamState{
		peer: spiffeID, delta: delta,
		acked: map[string]string{}, sent: map[string]string{},
		pending: map[string]string{}, wildcard: map[string]bool{},
	}
	return nil
}

// peerID returns the SPIFFE ID of the verified client certificate. The TLS
// configuration has already checked the chain and that the certificate
// carries exactly one SPIFFE ID in the trust domain.
func peerID(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", fmt.Errorf("no peer in stream context")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.PeerCertificates) == 0 {
		return "", fmt.Errorf("peer %s presented no verified client certificate", p.Addr)
	}
	uris := info.State.PeerCertificates[0].URIs
	if len(uris) != 1 {
		return "", fmt.Errorf("peer %s certificate has %d URI SANs, want 1", p.Addr, len(uris))
	}
	return uris[0].String(), nil
}

func (c callbacks) OnStreamClosed(id int64, _ *corev3.Node) { c.close(streamKey{false, id}) }
func (c callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	c.close(streamKey{true, id})
}

func (c callbacks) close(key streamKey) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	delete(c.s.streams, key)
	c.s.broadcastLocked()
}

// bindLocked checks that the node id is the certificate's SPIFFE ID. The cache
// keys snapshots by node id, so a mismatch closes the stream before any
// configuration is sent. Guarded by Server.mu.
func (c callbacks) bindLocked(key streamKey, node string) (*streamState, error) {
	ss, ok := c.s.streams[key]
	if !ok {
		return nil, status.Errorf(codes.Internal, "stream %d is not open", key.id)
	}
	if node == "" && ss.node != "" {
		// Only the first request must carry the node, and go-control-plane's
		// delta server calls back before filling it in.
		return ss, nil
	}
	if node != ss.peer {
		c.s.log.Warn("xds node id does not match certificate", "stream", key.id, "node", node, "certificate", ss.peer)
		return nil, status.Errorf(codes.PermissionDenied, "node id %q does not match the certificate's SPIFFE ID %q", node, ss.peer)
	}
	ss.node = node
	return ss, nil
}

func (c callbacks) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()

	ss, err := c.bindLocked(streamKey{false, id}, req.GetNode().GetId())
	if err != nil {
		return err
	}

	typ := req.GetTypeUrl()
	if detail := req.GetErrorDetail(); detail != nil {
		rejected := ss.sent[typ]
		ss.acked[typ] = req.GetVersionInfo()
		c.s.recordNACK(ss.node, resource.Type(typ), rejected, req.GetVersionInfo(), cleanMessage(detail.GetMessage()))
	} else {
		ss.acked[typ] = req.GetVersionInfo()
		if req.GetResponseNonce() != "" {
			c.s.recordACK(ss.node, resource.Type(typ), req.GetVersionInfo())
		}
	}
	c.s.broadcastLocked()
	return nil
}

func (c callbacks) OnStreamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if ss, ok := c.s.streams[streamKey{false, id}]; ok {
		ss.sent[resp.GetTypeUrl()] = resp.GetVersionInfo()
		c.s.nodeLocked(ss.node).pushes[resource.Type(resp.GetTypeUrl())]++
	}
}

// OnStreamDeltaRequest binds the stream, records NACKs and notes which
// responses the node has acknowledged or rejected. go-control-plane's delta server records a
// resource version when it sends it, so a rejected resource is not resent
// until its content changes.
func (c callbacks) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()

	ss, err := c.bindLocked(streamKey{true, id}, req.GetNode().GetId())
	if err != nil {
		return err
	}

	typ := req.GetTypeUrl()
	if _, seen := ss.wildcard[typ]; !seen {
		// As in the delta protocol, a first request that names no resource,
		// or names "*", subscribes to all of them.
		names := req.GetResourceNamesSubscribe()
		ss.wildcard[typ] = len(names) == 0 || slices.Contains(names, "*")
	}
	answered := req.GetResponseNonce() != "" && req.GetResponseNonce() == ss.pending[typ]
	if answered {
		delete(ss.pending, typ)
	}
	st := c.s.nodeLocked(ss.node)
	if n, ok := st.nacks[resource.Type(typ)]; ok && answered && req.GetErrorDetail() == nil && n.Version != ss.sent[typ] {
		// The node accepted a later version, so the rejection is history.
		delete(st.nacks, resource.Type(typ))
	}
	if detail := req.GetErrorDetail(); detail != nil {
		st.nacks[resource.Type(typ)] = NACK{Version: ss.sent[typ], Message: cleanMessage(detail.GetMessage()), At: c.s.now(), delta: true}
		c.s.log.Warn("xds node rejected configuration", "node", ss.node, "type", typ, "delta", true, "message", cleanMessage(detail.GetMessage()))
	}
	c.s.broadcastLocked()
	return nil
}

func (c callbacks) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if ss, ok := c.s.streams[streamKey{true, id}]; ok {
		ss.sent[resp.GetTypeUrl()] = resp.GetSystemVersionInfo()
		ss.pending[resp.GetTypeUrl()] = resp.GetNonce()
		c.s.nodeLocked(ss.node).pushes[resource.Type(resp.GetTypeUrl())]++
	}
}

// OnFetchRequest rejects REST and unary fetches: they carry no stream to
// bind to a certificate, and ward serves ADS only.
func (c callbacks) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error {
	return status.Error(codes.Unimplemented, "fetch is not supported, use ADS")
}

func (c callbacks) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}

// cleanMessage bounds a peer's error text and drops any PEM block in it,
// since a peer may quote the secret it failed to load.
func cleanMessage(msg string) string {
	if i := strings.Index(msg, "-----BEGIN"); i >= 0 {
		msg = msg[:i] + "[PEM redacted]"
	}
	if len(msg) > maxNACKMessage {
		// Cutting may split a rune, so drop the invalid tail.
		msg = strings.ToValidUTF8(msg[:maxNACKMessage], "") + "…"
	}
	return msg
}
