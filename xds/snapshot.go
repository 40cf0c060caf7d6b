package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// ErrInvalidSnapshot wraps every reason a rendered snapshot is not pushed.
var ErrInvalidSnapshot = errors.New("invalid snapshot")

// resourceTypes are the types ward serves, in the order Envoy applies them.
var resourceTypes = []resource.Type{
	resource.ClusterType,
	resource.EndpointType,
	resource.ListenerType,
	resource.RouteType,
	resource.SecretType,
}

// typeSet is one resource type's content for a node, with its version: a
// hash of the content, so equal content always has an equal version.
type typeSet struct {
	version string
	items   []types.Resource
	digests [][sha256.Size]byte // per item, for delta resource versions
	// held marks rejected content offered under the version the node
	// holds, so version no longer identifies the content.
	held bool
}

// nodeSet is a node's complete configuration, indexed by type URL.
type nodeSet map[resource.Type]typeSet

// buildSet validates every resource, sorts them by name, computes the
// version of each type from the resources' digests, and checks the node's
// references. f caches per-resource work across the nodes of one build and
// may be nil.
func buildSet(res map[resource.Type][]types.Resource, f factCache) (nodeSet, error) {
	out := make(nodeSet, len(resourceTypes))
	for _, typ := range resourceTypes {
		items := res[typ]
		slices.SortFunc(items, func(a, b types.Resource) int {
			return compareStrings(cache.GetResourceName(a), cache.GetResourceName(b))
		})

		h := sha256.New()
		sums := make([][sha256.Size]byte, len(items))
		for i, r := range items {
			facts, err := f.get(r)
			if err != nil {
				return nil, err
			}
			h.Write(facts.digest[:])
			sums[i] = facts.digest
		}
		version := ""
		if len(items) > 0 {
			version = hex.EncodeToString(h.Sum(nil)[:8])
		}
		out[typ] = typeSet{version: version, items: items, digests: sums}
	}

	if err := checkConsistent(out, f); err != nil {
		return nil, err
	}
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type validatorAll interface{ ValidateAll() error }

func validate(r types.Resource) error {
	v, ok := r.(validatorAll)
	if !ok {
		return fmt.Errorf("%w: %T has no validation", ErrInvalidSnapshot, r)
	}
	if err := v.ValidateAll(); err != nil {
		return fmt.Errorf("%w: %T %q: %w", ErrInvalidSnapshot, r, cache.GetResourceName(r), err)
	}
	return nil
}

// hashable returns what goes into r's version hash. An SDS certificate
// secret is hashed without its private key, so no function of the key leaves
// the process: a new key always arrives with a new certificate.
func hashable(r types.Resource) types.Resource {
	if s, ok := r.(*tlsv3.Secret); ok && s.GetTlsCertificate() != nil {
		return &tlsv3.Secret{Name: s.GetName(), Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: s.GetTlsCertificate().GetCertificateChain(),
		}}}
	}
	return r
}

// snapshot converts a node set into a go-control-plane snapshot with one
// version per type.
//
// With delta, the snapshot also carries the per-resource versions that
// go-control-plane diffs against what a node holds. ward sets them from its
// own digests, which leave SDS private keys out, so the cache need not
// marshal and hash every resource again. The version on the wire is still
// go-control-plane's own SHA-256 of the whole resource (v0.14 computes it
// when sending), and only the node that receives the resource gets it.
func (ns nodeSet) snapshot(delta bool) *cache.Snapshot {
	s := &cache.Snapshot{}
	if delta {
		s.VersionMap = make(map[string]map[string]string, len(resourceTypes))
		for _, typ := range resourceTypes {
			s.VersionMap[typ] = map[string]string{}
		}
	}
	for typ, set := range ns {
		s.Resources[cache.GetResponseType(typ)] = cache.NewResources(set.version, set.items)
		if delta {
			for i, r := range set.items {
				s.VersionMap[typ][cache.GetResourceName(r)] = hex.EncodeToString(set.digests[i][:8])
			}
		}
	}
	return s
}

// checkConsistent runs go-control-plane's consistency check (every EDS and
// RDS name referenced exists, and nothing unreferenced) and ward's own:
// every route, TCP proxy and SDS reference names a resource in the snapshot.
func checkConsistent(ns nodeSet, f factCache) error {
	// go-control-plane v0.14 counts RDS references from filter chains only,
	// not from the api_listener that gRPC client listeners use. Routes named
	// by api listeners are checked here and left out of Consistent.
	routes := names(ns[resource.RouteType].items)
	apiRoutes := map[string]bool{}
	for _, r := range ns[resource.ListenerType].items {
		facts, err := f.get(r)
		if err != nil {
			return err
		}
		if facts.apiRoute == "" {
			continue
		}
		if !routes[facts.apiRoute] {
			return fmt.Errorf("%w: api listener %q names route %q, which is not in the snapshot", ErrInvalidSnapshot, cache.GetResourceName(r), facts.apiRoute)
		}
		apiRoutes[facts.apiRoute] = true
	}
	rest := maps.Clone(ns)
	rest[resource.RouteType] = typeSet{version: ns[resource.RouteType].version, items: slices.DeleteFunc(slices.Clone(ns[resource.RouteType].items), func(r types.Resource) bool {
		return apiRoutes[cache.GetResourceName(r)]
	})}
	if err := rest.snapshot(false).Consistent(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSnapshot, err)
	}

	clusters := names(ns[resource.ClusterType].items)
	secrets := names(ns[resource.SecretType].items)
	for _, typ := range []resource.Type{resource.ListenerType, resource.RouteType, resource.ClusterType} {
		for _, r := range ns[typ].items {
			facts, err := f.get(r)
			if err != nil {
				return err
			}
			for _, c := range facts.clusters {
				if !clusters[c] {
					return fmt.Errorf("%w: %s %q names cluster %q, which is not in the snapshot", ErrInvalidSnapshot, shortType(typ), cache.GetResourceName(r), c)
				}
			}
			for _, sec := range facts.secrets {
				if !secrets[sec] {
					return fmt.Errorf("%w: %s %q names SDS secret %q, which is not in the snapshot", ErrInvalidSnapshot, shortType(typ), cache.GetResourceName(r), sec)
				}
			}
		}
	}
	return nil
}

func shortType(typ resource.Type) string {
	return strings.ToLower(typ[strings.LastIndex(typ, ".")+1:])
}

func names(items []types.Resource) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, r := range items {
		m[cache.GetResourceName(r)] = true
	}
	return m
}
