package xds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Rebuild renders, validates and pushes every node's snapshot now. When any
// node's configuration fails, nothing is pushed: every node keeps its last
// good configuration and the error is returned, logged and shown by Status.
func (s *Server) Rebuild(ctx context.Context) error {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()

	s.mu.Lock()
	services := slices.Clone(s.services)
	quarantined := make(map[string]bool, len(s.quarantined))
	for id := range s.quarantined {
		quarantined[id] = true
	}
	s.mu.Unlock()

	sets, err := s.render(ctx, services, quarantined)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.build = buildStatus{at: s.now(), err: err, count: s.build.count + 1}
	if err != nil {
		s.log.Error("xds build failed, keeping the last good configuration", "error", err)
		return err
	}

	for id, set := range sets {
		st := s.nodeLocked(id)
		st.kind = kindOf(services, id)
		st.desired = set
		s.pushLocked(id, st)
	}
	for id := range s.nodes {
		if _, ok := sets[id]; !ok {
			// The service was removed: its node gets nothing any more. A
			// node that still has a stream gets a fresh record on its next
			// request.
			delete(s.nodes, id)
			s.cache.ClearSnapshot(id)
		}
	}
	for id := range s.svids {
		if _, ok := sets[id]; !ok {
			delete(s.svids, id)
		}
	}
	s.broadcastLocked()
	s.log.Debug("xds build pushed", "nodes", len(sets))
	return nil
}

func kindOf(services []Service, id string) Kind {
	for i := range services {
		if services[i].SPIFFEID == id {
			return services[i].Kind
		}
	}
	return ""
}

// render decides the connect graph and renders and validates every node's
// resources. It returns the first failure, naming the service.
func (s *Server) render(ctx context.Context, services []Service, quarantined map[string]bool) (map[string]nodeSet, error) {
	slices.SortFunc(services, func(a, b Service) int { return strings.Compare(a.Name, b.Name) })
	byID := make(map[string]*Service, len(services))
	for i := range services {
		byID[services[i].SPIFFEID] = &services[i]
	}

	lister, haveRules := s.cfg.Authorizer.(RuleLister)
	var rules []ConnectRule
	if haveRules {
		rules = lister.ConnectRules(s.cfg.Domain)
		if err := checkRules(rules, byID); err != nil {
			return nil, err
		}
	}
	g := decide(services, s.cfg.Authorizer, s.cfg.Domain, quarantined, rules, haveRules)
	return s.renderGraph(ctx, services, byID, g, quarantined)
}

// renderGraph renders and validates every node's resources for a decided
// connect graph. services must be sorted by name.
func (s *Server) renderGraph(ctx context.Context, services []Service, byID map[string]*Service, g graph, quarantined map[string]bool) (map[string]nodeSet, error) {
	bundle := s.cfg.Issuer.TrustBundlePEM()
	if len(bundle) == 0 {
		return nil, errors.New("xds: the issuer returned an empty trust bundle")
	}

	clients := map[string]*grpcClient{}
	for i := range services {
		c, err := newGRPCClient(&services[i])
		if err != nil {
			return nil, err
		}
		clients[services[i].SPIFFEID] = c
	}
	all := make([]*grpcClient, 0, len(services))
	for i := range services {
		all = append(all, clients[services[i].SPIFFEID])
	}

	shared := factCache{}
	sets := make(map[string]nodeSet, len(services))
	for i := range services {
		svc := &services[i]
		callers := g.callers[svc.SPIFFEID]
		if quarantined[svc.SPIFFEID] {
			// A quarantined service admits no caller.
			callers = nil
		}

		var res map[resource.Type][]types.Resource
		var err error
		switch svc.Kind {
		case KindGRPC:
			targets := all
			if s.cfg.GRPCClientScope == ClientScopePermitted {
				targets = make([]*grpcClient, 0, len(g.upstreams[svc.SPIFFEID]))
				for _, id := range g.upstreams[svc.SPIFFEID] {
					targets = append(targets, clients[id])
				}
			}
			res, err = renderGRPC(svc, targets, callers)
		case KindEnvoy:
			var cert svid
			cert, err = s.svidFor(ctx, svc.SPIFFEID)
			if err != nil {
				return nil, fmt.Errorf("xds: service %q: %w", svc.Name, err)
			}
			ups := make([]*Service, 0, len(g.upstreams[svc.SPIFFEID]))
			for _, id := range g.upstreams[svc.SPIFFEID] {
				ups = append(ups, byID[id])
			}
			res, err = renderEnvoy(svc, ups, callers, cert, bundle)
		}
		if err != nil {
			return nil, fmt.Errorf("xds: service %q: %w", svc.Name, err)
		}

		if s.mutate != nil {
			s.mutate(svc.SPIFFEID, res)
		}
		set, err := buildSet(res, shared)
		if err != nil {
			return nil, fmt.Errorf("xds: service %q: %w", svc.Name, err)
		}
		sets[svc.SPIFFEID] = set
	}
	return sets, nil
}
