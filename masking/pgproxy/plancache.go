package pgproxy

import (
	"bytes"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"ward.dev/ward/authz"
)

// decisionGeneration is implemented by deciders whose decisions change only
// when Generation changes; *authz.Enforcer implements it. The proxy reuses
// result plans only with such a decider.
type decisionGeneration interface {
	Generation() uint64
}

var _ decisionGeneration = (*authz.Enforcer)(nil)

// planStamp records what a result plan was decided from, other than the
// statement and fields: the decider's generation and when the catalog and
// masker caches were last emptied.
type planStamp struct {
	authz   uint64
	catalog time.Time
	maskers time.Time
}

// planStamp returns the current stamp. ok is false when the decider has no
// generation, so plans cannot be reused.
func (s *session) planStamp() (planStamp, bool) {
	g, ok := s.srv.authz.(decisionGeneration)
	if !ok || s.srv.catalog == nil || s.srv.maskers == nil {
		return planStamp{}, false
	}
	// The generation is read first: a change after it makes the stamp
	// stale, never a stale plan current.
	st := planStamp{authz: g.Generation()}
	s.srv.catalog.mu.Lock()
	st.catalog = s.srv.catalog.filled
	s.srv.catalog.mu.Unlock()
	s.srv.maskers.mu.Lock()
	st.maskers = s.srv.maskers.filled
	s.srv.maskers.mu.Unlock()
	return st, true
}

// current reports whether a plan stamped st may still be used when the
// stamp is now and the time is clock: the policy is unchanged, and neither
// cache has been emptied or has expired.
func (st planStamp) current(now planStamp, clock time.Time) bool {
	return st == now && clock.Sub(st.catalog) < catalogTTL && clock.Sub(st.maskers) < catalogTTL
}

// maxCachedPlans bounds the plans one session keeps; a full cache is
// emptied.
const maxCachedPlans = 256

// cachedPlan is a result plan with what it was decided from.
type cachedPlan struct {
	fields []pgproto3.FieldDescription
	stamp  planStamp
	plan   *resultPlan
}

// planCache keeps one session's result plans by statement analysis and
// row description, so a repeated statement skips origin lookups and
// authorization decisions. Plans are read-only once made. It is safe for
// concurrent use.
type planCache struct {
	mu      sync.Mutex
	n       int
	entries map[*statement][]cachedPlan
}

// get returns the plan for st and fields if one is current, or nil.
func (c *planCache) get(st *statement, fields []pgproto3.FieldDescription, now planStamp, clock time.Time) *resultPlan {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries[st] {
		if sameFields(e.fields, fields) {
			if e.stamp.current(now, clock) {
				return e.plan
			}
			return nil
		}
	}
	return nil
}

// put stores p, replacing a plan for the same statement and fields.
func (c *planCache) put(st *statement, fields []pgproto3.FieldDescription, stamp planStamp, p *resultPlan) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || c.n >= maxCachedPlans {
		c.entries = map[*statement][]cachedPlan{}
		c.n = 0
	}
	list := c.entries[st]
	for i := range list {
		if sameFields(list[i].fields, fields) {
			list[i].stamp, list[i].plan = stamp, p
			return
		}
	}
	c.entries[st] = append(list, cachedPlan{fields: cloneFields(fields), stamp: stamp, plan: p})
	c.n++
}

// sameFields reports whether two row descriptions are equal in every
// field a plan depends on.
func sameFields(a, b []pgproto3.FieldDescription) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if x.TableOID != y.TableOID || x.TableAttributeNumber != y.TableAttributeNumber ||
			x.DataTypeOID != y.DataTypeOID || x.DataTypeSize != y.DataTypeSize ||
			x.TypeModifier != y.TypeModifier || x.Format != y.Format || !bytes.Equal(x.Name, y.Name) {
			return false
		}
	}
	return true
}
