package xds

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Status is a point-in-time view of the control plane.
type Status struct {
	BuiltAt    time.Time    `json:"built_at"`
	BuildError string       `json:"build_error,omitempty"` // empty when the last build succeeded
	Builds     uint64       `json:"builds"`                // builds attempted since start
	Nodes      []NodeStatus `json:"nodes"`
}

// NodeStatus is one node's configuration state.
type NodeStatus struct {
	Node        string       `json:"node"` // SPIFFE ID
	Kind        Kind         `json:"kind"`
	Streams     int          `json:"streams"` // open ADS streams
	Quarantined bool         `json:"quarantined"`
	Types       []TypeStatus `json:"types"`
}

// TypeStatus is one resource type's state on a node. Desired differs from
// Served while the node rejects the latest build.
type TypeStatus struct {
	Type     string `json:"type"`
	Desired  string `json:"desired_version"`
	Served   string `json:"served_version"`
	Accepted string `json:"accepted_version"`
	NACK     *NACK  `json:"nack,omitempty"`
	Pushes   int    `json:"pushes"` // responses of this type sent to the node
}

// Status returns the build state and every known node's versions and NACKs,
// sorted by node.
func (s *Server) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()

	out := Status{BuiltAt: s.build.at, Builds: s.build.count}
	if s.build.err != nil {
		out.BuildError = s.build.err.Error()
	}
	streams := map[string]int{}
	for _, ss := range s.streams {
		if ss.node != "" {
			streams[ss.node]++
		}
	}
	for id, st := range s.nodes {
		ns := NodeStatus{Node: id, Kind: st.kind, Streams: streams[id], Quarantined: s.quarantined[id]}
		for _, typ := range resourceTypes {
			ts := TypeStatus{Type: typ, Desired: st.desiredVersion(typ), Accepted: st.accepted[typ], Pushes: st.pushes[typ]}
			if st.served != nil {
				ts.Served = st.served[typ].version
			}
			if n, ok := st.nacks[typ]; ok {
				ts.NACK = &n
			}
			if ts.Desired == "" && ts.Served == "" && ts.Accepted == "" && ts.NACK == nil {
				continue
			}
			ns.Types = append(ns.Types, ts)
		}
		out.Nodes = append(out.Nodes, ns)
	}
	slices.SortFunc(out.Nodes, func(a, b NodeStatus) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// WaitConverged blocks until every open ADS stream has acknowledged, or
// rejected, the version now offered for each type it subscribes to, and
// returns how long that took. It returns the context's error otherwise,
// naming the nodes still pending.
func (s *Server) WaitConverged(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	for {
		s.mu.Lock()
		pending := s.pendingLocked()
		changed := s.changed
		s.mu.Unlock()
		if len(pending) == 0 {
			return time.Since(start), nil
		}

		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("xds: nodes not converged: %s: %w", strings.Join(pending, ", "), ctx.Err())
		case <-changed:
		}
	}
}

// pendingLocked lists nodes with a stream that has not yet acknowledged or
// rejected the version it is offered.
//
// A state-of-the-world stream is pending while its acknowledged version of
// a subscribed type differs from the served one. A delta stream is pending
// while a wildcard type (Envoy's listeners and clusters, which carry RBAC
// and upstreams) has a response unanswered or not yet sent. Delta types
// subscribed by name are not awaited: a change may not concern the names a
// stream holds, and then no response comes.
func (s *Server) pendingLocked() []string {
	var pending []string
	for _, ss := range s.streams {
		st := s.nodes[ss.node]
		if st == nil || st.served == nil {
			continue
		}
		if ss.delta {
			for typ, all := range ss.wildcard {
				if all && (ss.pending[typ] != "" || ss.sent[typ] != st.served[resource.Type(typ)].version) {
					pending = append(pending, ss.node)
					break
				}
			}
			continue
		}
		for typ, v := range ss.acked {
			if v != st.served[resource.Type(typ)].version {
				pending = append(pending, ss.node)
				break
			}
		}
	}
	slices.Sort(pending)
	return slices.Compact(pending)
}
