package authz

import (
	"hash/maphash"
	"sync"
)

// DefaultCacheSize is the number of decisions each policy version keeps.
const DefaultCacheSize = 16384

// maxCachedRequestBytes keeps long requests out of the cache, so the cache
// holds at most DefaultCacheSize * 1 KiB of request text.
const maxCachedRequestBytes = 1024

// Size and key limit of the role lookup memo, at most 16 MiB of key text.
const (
	roleMemoSize     = 32768
	maxRoleMemoBytes = 512
)

const cacheShards = 16

type cacheKey struct{ sub, dom, obj, act string }

// roleKey is a role lookup: does name1 hold name2 in domain.
type roleKey struct{ name1, name2, domain string }

// boundedCache maps keys to values for one snapshot, so a new policy
// version starts empty and nothing cached outlives the policy that made it.
// When a shard is full it is emptied and refilled: the cache is bounded, not
// an LRU. It is safe for concurrent use; a nil cache stores nothing.
type boundedCache[K comparable, V any] struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard[K, V]
}

type cacheShard[K comparable, V any] struct {
	mu     sync.RWMutex
	values map[K]V
}

type decisionCache = boundedCache[cacheKey, Decision]

// newDecisionCache returns a cache of about size entries, or nil (no
// caching) when size is 0 or less.
func newDecisionCache(size int) *decisionCache {
	return newBoundedCache[cacheKey, Decision](size)
}

func newBoundedCache[K comparable, V any](size int) *boundedCache[K, V] {
	if size <= 0 {
		return nil
	}

	c := &boundedCache[K, V]{seed: maphash.MakeSeed(), perShard: max(size/cacheShards, 1)}
	for i := range c.shards {
		c.shards[i].values = make(map[K]V)
	}
	return c
}

func (c *boundedCache[K, V]) shard(k K) *cacheShard[K, V] {
	return &c.shards[maphash.Comparable(c.seed, k)%cacheShards]
}

func (c *boundedCache[K, V]) get(k K) (V, bool) {
	if c == nil {
		var zero V
		return zero, false
	}

	sh := c.shard(k)
	sh.mu.RLock()
	v, ok := sh.values[k]
	sh.mu.RUnlock()
	return v, ok
}

func (c *boundedCache[K, V]) put(k K, v V) {
	if c == nil {
		return
	}

	sh := c.shard(k)
	sh.mu.Lock()
	if len(sh.values) >= c.perShard {
		clear(sh.values)
	}
	sh.values[k] = v
	sh.mu.Unlock()
}

// putRequest stores a decision unless the request is long.
func putRequest(c *decisionCache, k cacheKey, d Decision) {
	if len(k.sub)+len(k.dom)+len(k.obj)+len(k.act) > maxCachedRequestBytes {
		return
	}
	c.put(k, d)
}
