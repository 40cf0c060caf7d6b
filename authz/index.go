package authz

import (
	"math"
	"slices"
	"strings"
)

// nameIDs numbers the domain or action names used by p lines, so the index
// compares numbers. Zero is *, and names that no line uses get unknownName.
type nameIDs map[string]uint16

const (
	anyName     uint16 = 0
	unknownName uint16 = math.MaxUint16
)

func newNameIDs() nameIDs {
	return nameIDs{wildcard: anyName}
}

// assign returns the number of name, numbering it if it is new. It reports
// false when there are too many names to number.
func (n nameIDs) assign(name string) (uint16, bool) {
	if id, ok := n[name]; ok {
		return id, true
	}
	if len(n) >= int(unknownName) {
		return unknownName, false
	}
	id := uint16(len(n))
	n[name] = id
	return id, true
}

// lookup returns the number of a request's name, or unknownName.
func (n nameIDs) lookup(name string) uint16 {
	if id, ok := n[name]; ok {
		return id
	}
	return unknownName
}

type objectKind uint8

const (
	objectExact objectKind = iota
	objectPrefix
	objectSelfX509
	objectSelfJWT
)

// lineRef is the index's copy of one p line's domain, action and object
// test. It is kept beside the other lines of its bucket, so a lookup reads
// contiguous memory instead of following pointers into policy.rules.
type lineRef struct {
	index    int32 // in policy.rules
	dom, act uint16
	kind     objectKind
	prefix   string // for objectPrefix: the object without its trailing *
}

// bucket holds the p lines of one subject. Lines naming an exact object are
// keyed by that object's number (see snapshot.objectIDs), and the rest
// (object patterns, x509/self and jwt/self) by action, so a request looks up
// only lines that name its object or its action (or *).
type bucket struct {
	exact  map[uint32][]lineRef
	other  map[uint16][]lineRef
	anyAct []lineRef // the lines of other with action *
}

func (b *bucket) add(ref lineRef, objID uint32) {
	switch {
	case ref.kind == objectExact:
		b.exact[objID] = append(b.exact[objID], ref)
	case ref.act == anyName:
		b.anyAct = append(b.anyAct, ref)
	default:
		b.other[ref.act] = append(b.other[ref.act], ref)
	}
}

func bucketFor(m map[string]*bucket, key string) *bucket {
	b := m[key]
	if b == nil {
		b = &bucket{exact: make(map[uint32][]lineRef), other: make(map[uint16][]lineRef)}
		m[key] = b
	}
	return b
}

// newLineRef returns the lineRef of p line i, given its object and the
// numbers of its domain and action.
func newLineRef(i int, obj string, dom, act uint16) lineRef {
	ref := lineRef{index: int32(i), dom: dom, act: act}
	switch {
	case strings.HasSuffix(obj, wildcard):
		ref.kind, ref.prefix = objectPrefix, strings.TrimSuffix(obj, wildcard)
	case obj == selfX509:
		ref.kind = objectSelfX509
	case obj == selfJWT:
		ref.kind = objectSelfJWT
	}
	return ref
}

// indexRequest is a request with its domain and action numbered.
type indexRequest struct {
	sub, obj string
	dom, act uint16
}

// matches tests domain, action and object the way DefaultModel's matcher
// does. The subject was matched by the bucket, and an exact object by the
// bucket's key.
func (r *lineRef) matches(req *indexRequest) bool {
	if r.dom != anyName && r.dom != req.dom {
		return false
	}

	if r.act != anyName && r.act != req.act {
		return false
	}

	switch r.kind {
	case objectPrefix:
		return strings.HasPrefix(req.obj, r.prefix)
	case objectSelfX509:
		id, ok := strings.CutPrefix(req.obj, "x509/")
		return req.obj == selfX509 || ok && id == req.sub
	case objectSelfJWT:
		id, ok := strings.CutPrefix(req.obj, "jwt/")
		return req.obj == selfJWT || ok && id == req.sub
	}
	return true
}

// candidates appends to out, in file order, the indexes of the p lines
// whose subject, domain, object and action can match the request.
func (s *snapshot) candidates(out []int32, sub, dom, obj, act string) []int32 {
	req := indexRequest{sub: sub, obj: obj, dom: s.domainIDs.lookup(dom), act: s.actionIDs.lookup(act)}
	objID, exact := s.objectIDs[obj]
	filter := func(refs []lineRef) {
		for k := range refs {
			if refs[k].matches(&req) {
				out = append(out, refs[k].index)
			}
		}
	}
	add := func(b *bucket) {
		if b == nil {
			return
		}
		if exact {
			filter(b.exact[objID])
		}
		if req.act != unknownName {
			filter(b.other[req.act])
		}
		filter(b.anyAct)
	}

	add(s.bySubject[sub])

	roleBuckets, ok := s.roleBuckets[dom]
	if !ok {
		roleBuckets = s.roleBuckets[otherDomain]
	}
	for _, b := range roleBuckets[sub] {
		add(b)
	}

	for _, n := range s.prefixLengths {
		if n > len(sub) {
			break
		}
		add(s.byPrefix[sub[:n]])
	}

	slices.Sort(out)
	return out
}
