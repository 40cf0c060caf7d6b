package authz

import (
	"strings"
	"testing"
)

func TestDecisionCacheBounded(t *testing.T) {
	c := newDecisionCache(cacheShards * 4)
	for i := range 1000 {
		putRequest(c, cacheKey{sub: "s", dom: "d", obj: strings.Repeat("o", i%50) + string(rune('a'+i%26)), act: "a"}, Decision{Allowed: true})
	}
	total := 0
	for i := range c.shards {
		n := len(c.shards[i].values)
		if n > c.perShard {
			t.Errorf("shard %d holds %d decisions, want at most %d", i, n, c.perShard)
		}
		total += n
	}
	if total == 0 {
		t.Errorf("cache holds no decisions after 1000 puts")
	}
}

func TestDecisionCacheSkipsLongRequests(t *testing.T) {
	c := newDecisionCache(DefaultCacheSize)
	long := cacheKey{sub: "s", dom: "d", obj: strings.Repeat("o", maxCachedRequestBytes), act: "a"}
	putRequest(c, long, Decision{Allowed: true})
	if _, ok := c.get(long); ok {
		t.Errorf("get(%d-byte request) found a decision, want long requests left out", maxCachedRequestBytes)
	}

	short := cacheKey{sub: "s", dom: "d", obj: "o", act: "a"}
	putRequest(c, short, Decision{Allowed: true, Rule: "r"})
	if d, ok := c.get(short); !ok || d.Rule != "r" {
		t.Errorf("get(short) = %+v, %v, want the stored decision", d, ok)
	}
}

func TestDecisionCacheDisabled(t *testing.T) {
	c := newDecisionCache(0)
	putRequest(c, cacheKey{sub: "s"}, Decision{Allowed: true})
	if _, ok := c.get(cacheKey{sub: "s"}); ok {
		t.Errorf("get() on a disabled cache found a decision")
	}
}
