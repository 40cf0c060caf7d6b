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

const cacheShards = 16

type cacheKey struct{ sub, dom, obj, act string }

// decisionCache maps requests to decisions for one snapshot. A new policy
// version starts with an empty cache, so a cached decision never outlives the
// policy that made it. When a shard is full it is emptied and refilled; the
// cache is bounded, not an LRU. It is safe for concurrent use.
type decisionCache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu        sync.RWMutex
	decisions map[cacheKey]Decision
}

// newDecisionCache returns a cache of about size entries, or nil (no
// caching) when size is 0 or less.
func newDecisionCache(size int) *decisionCache {
	if size <= 0 {
		return nil
	}

	c := &decisionCache{seed: maphash.MakeSeed(), perShard: max(size/cacheShards, 1)}
	for i := range c.shards {
		c.shards[i].decisions = make(map[cacheKey]Decision)
	}
	return c
}

func (c *decisionCache) shard(k cacheKey) *cacheShard {
	return &c.shards[maphash.Comparable(c.seed, k)%cacheShards]
}

func (c *decisionCache) get(k cacheKey) (Decision, bool) {
	if c == nil {
		return Decision{}, false
	}

	sh := c.shard(k)
	sh.mu.RLock()
	d, ok := sh.decisions[k]
	sh.mu.RUnlock()
	return d, ok
}

func (c *decisionCache) put(k cacheKey, d Decision) {
	if c == nil || len(k.sub)+len(k.dom)+len(k.obj)+len(k.act) > maxCachedRequestBytes {
		return
	}

	sh := c.shard(k)
	sh.mu.Lock()
	if len(sh.decisions) >= c.perShard {
		clear(sh.decisions)
	}
	sh.decisions[k] = d
	sh.mu.Unlock()
}
