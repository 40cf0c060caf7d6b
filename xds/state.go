package xds

import (
	"context"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// nodeState is the server's record of one node id. Guarded by Server.mu.
type nodeState struct {
	kind     Kind
	desired  nodeSet // the latest successful build
	served   nodeSet // the configuration the cache offers now
	accepted map[resource.Type]string
	nacks    map[resource.Type]NACK
	pushes   map[resource.Type]int // responses sent, over all streams
}

// NACK is a configuration version a node rejected.
type NACK struct {
	Version string    `json:"version"`
	Message string    `json:"message"` // the node's error_detail, at most 2 KiB, PEM blocks removed
	At      time.Time `json:"at"`
	// delta is set for a NACK on a delta stream. The server does not roll
	// those back: it holds no accepted version for them, and the delta
	// server does not resend a rejected resource anyway.
	delta bool
}

func (s *Server) nodeLocked(id string) *nodeState {
	st, ok := s.nodes[id]
	if !ok {
		st = &nodeState{
			accepted: map[resource.Type]string{},
			nacks:    map[resource.Type]NACK{},
			pushes:   map[resource.Type]int{},
		}
		s.nodes[id] = st
	}
	return st
}

// pushLocked computes what the node should be offered and hands it to the
// cache when it differs from what is offered now. A type whose desired
// version the node has rejected is held (see hold), so the rejected version
// is not resent.
func (s *Server) pushLocked(id string, st *nodeState) {
	if st.desired == nil {
		return
	}

	next := make(nodeSet, len(st.desired))
	changed := st.served == nil
	for typ, set := range st.desired {
		if n, ok := st.nacks[typ]; ok && !n.delta && n.Version == set.version {
			set = hold(st.accepted[typ], set)
		}
		next[typ] = set
		if st.served == nil || st.served[typ].version != set.version || st.served[typ].held != set.held {
			changed = true
		}
	}
	if !changed {
		return
	}

	st.served = next
	// In go-control-plane v0.14 every watch channel has room for the one
	// response a watch receives, so SetSnapshot does not block while s.mu
	// is held.
	// Only Envoy nodes use delta xDS, and only they need resource versions.
	if err := s.cache.SetSnapshot(context.Background(), id, next.snapshot(st.kind == KindEnvoy)); err != nil {
		s.log.Error("xds set snapshot failed", "node", id, "error", err)
	}
}

// hold returns what to offer for a type whose content the node rejected
// while it still holds version: the rejected content, under the version
// string the node holds.
//
// The cache compares version strings only, so the stream that rejected the
// content gets nothing more and keeps its configuration. Another stream of
// the same node (a gRPC process has one per xDS client) that accepted the
// content receives it again under the held version string, with no change.
// Rolling back to older content instead would take accepted configuration
// away from such a stream, and offering an empty set would make a node
// delete its resources.
func hold(version string, rejected typeSet) typeSet {
	return typeSet{version: version, items: rejected.items, digests: rejected.digests, held: true}
}

// broadcastLocked wakes everyone waiting for a change of ACK state.
func (s *Server) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// recordACK notes that node accepted version of typ.
func (s *Server) recordACK(node string, typ resource.Type, version string) {
	st := s.nodeLocked(node)
	st.accepted[typ] = version
	if n, ok := st.nacks[typ]; ok && n.Version != version && version != "" && version == st.desiredVersion(typ) {
		// The node has accepted newer configuration, so the rejection is
		// history.
		delete(st.nacks, typ)
	}
}

func (st *nodeState) desiredVersion(typ resource.Type) string {
	if st.desired == nil {
		return ""
	}
	return st.desired[typ].version
}

// recordNACK notes that node rejected version of typ while it still holds
// accepted, and rolls the type back to accepted.
func (s *Server) recordNACK(node string, typ resource.Type, rejected, accepted, message string) {
	st := s.nodeLocked(node)
	st.accepted[typ] = accepted
	st.nacks[typ] = NACK{Version: rejected, Message: message, At: s.now()}
	s.log.Warn("xds node rejected configuration", "node", node, "type", typ, "version", rejected, "kept_version", accepted, "message", message)
	s.pushLocked(node, st)
}
