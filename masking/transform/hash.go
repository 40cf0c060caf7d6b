package transform

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"sync/atomic"
)

func paramErr(msg string) error { return fmt.Errorf("%w: %s", ErrParam, msg) }

// keyedMAC computes HMAC-SHA256 under one derived key. It pools hash
// states with their scratch buffers, because building an HMAC costs two
// SHA-256 compressions of the key and every conversion of a string input
// would allocate. A keyedMAC is safe for concurrent use.
type keyedMAC struct {
	pool sync.Pool
}

type macState struct {
	h   hash.Hash
	in  []byte
	sum [sha256.Size]byte
}

// newKeyedMAC copies key, so the caller may clear its slice.
func newKeyedMAC(key []byte) *keyedMAC {
	k := &keyedMAC{}
	own := append([]byte(nil), key...)
	k.pool.New = func() any { return &macState{h: hmac.New(sha256.New, own)} }
	return k
}

// sum appends HMAC-SHA256(key, parts joined by 0x00) to dst.
func (k *keyedMAC) sum(dst []byte, parts ...string) []byte {
	st := k.pool.Get().(*macState)
	st.in = st.in[:0]
	for i, p := range parts {
		if i > 0 {
			st.in = append(st.in, 0)
		}
		st.in = append(st.in, p...)
	}
	st.h.Reset()
	st.h.Write(st.in)
	dst = append(dst, st.h.Sum(st.sum[:0])...)
	if cap(st.in) > 4096 {
		st.in = nil
	}
	k.pool.Put(st)
	return dst
}

// uint64s returns two 64-bit values from HMAC(key, parts), for seeding.
func (k *keyedMAC) uint64s(parts ...string) (uint64, uint64) {
	var buf [sha256.Size]byte
	s := k.sum(buf[:0], parts...)
	var a, b uint64
	for i := range 8 {
		a = a<<8 | uint64(s[i])
		b = b<<8 | uint64(s[8+i])
	}
	return a, b
}

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// hashT replaces a value with its keyed HMAC-SHA256, truncated.
type hashT struct {
	mac      *keyedMAC
	bytes    int
	encoding string
	prefix   string
}

// collisionFreeBytes is the truncated length from which hash counts as
// injective: with 128 bits, a collision among 2^32 values has probability
// below 2^-64.
const collisionFreeBytes = 16

func newHash(p *params, keys *Keys, _ bool) (Transformer, error) {
	n, err := p.integer("bytes", 16, 4, 32)
	if err != nil {
		return nil, err
	}
	enc, err := p.oneOf("encoding", "hex", "hex", "base32")
	if err != nil {
		return nil, err
	}
	key := keys.derive("hash "+p.str("key", "default"), 32)
	defer clear(key)
	return &hashT{mac: newKeyedMAC(key), bytes: n, encoding: enc, prefix: p.str("prefix", "")}, nil
}

func (t *hashT) Transform(value, _ string) (string, error) {
	var buf [sha256.Size]byte
	var out [128]byte
	sum := t.mac.sum(buf[:0], value)[:t.bytes]
	enc := append(out[:0], t.prefix...)
	if t.encoding == "hex" {
		enc = hex.AppendEncode(enc, sum)
	} else {
		enc = lowerBase32.AppendEncode(enc, sum)
	}
	return string(enc), nil
}

func (t *hashT) Info() Info {
	n := 2 * t.bytes
	if t.encoding == "base32" {
		n = lowerBase32.EncodedLen(t.bytes)
	}
	return Info{Name: "hash", Injective: t.bytes >= collisionFreeBytes, Kinds: KindText, MaxLen: fixed(len(t.prefix) + n)}
}

// emailT replaces the local part of an e-mail address with a keyed
// pseudonym and keeps or replaces the domain. The pseudonym comes from
// AES-CMAC rather than HMAC-SHA256: a proxy masks every address it relays,
// and CMAC costs about a third as much for inputs of this size.
type emailT struct {
	prf        *cmacKey
	localLen   int
	keepDomain bool
	domains    domainCache
}

// fakeDomains are reserved for documentation by RFC 2606, so a masked
// address can never reach a real mailbox.
var fakeDomains = []string{"example.com", "example.net", "example.org"}

func newEmail(p *params, keys *Keys, _ bool) (Transformer, error) {
	domain, err := p.oneOf("domain", "fake", "keep", "fake")
	if err != nil {
		return nil, err
	}
	n, err := p.integer("local_length", 16, 8, 52)
	if err != nil {
		return nil, err
	}
	key := keys.derive("email "+p.str("key", "default"), 32)
	defer clear(key)
	prf, err := newCMACKey(key)
	if err != nil {
		return nil, err
	}
	return &emailT{prf: prf, localLen: n, keepDomain: domain == "keep"}, nil
}

var errNotEmail = errors.New("email: value has no @")

func (t *emailT) Transform(value, entity string) (string, error) {
	var buf [128]byte
	out, err := t.AppendTransform(buf[:0], value, entity)
	return string(out), err
}

func (t *emailT) AppendTransform(dst []byte, value, _ string) ([]byte, error) {
	at := strings.LastIndexByte(value, '@')
	if at < 0 {
		return dst, fmt.Errorf("%w: %w", ErrInput, errNotEmail)
	}
	domain := strings.ToLower(value[at+1:])

	// The local part is hashed together with the domain so that the same
	// local part at two domains gives two pseudonyms. Letter case is
	// folded, so that Alice@ and alice@ stay one person, except where the
	// pseudonym must be injective: a UNIQUE column may hold both.
	local, keyDomain := strings.ToLower(value[:at]), domain
	if t.injective() {
		local, keyDomain = value[:at], value[at+1:]
	}
	var sum [40]byte
	n := (t.localLen + 7) / 8 * 5
	t.prf.expand(sum[:0], n, "local", local, keyDomain)
	if !t.keepDomain {
		domain = t.fakeDomain(domain)
	}

	// Base32 maps each 5 bytes to 8 characters on their own, so encoding
	// the whole 5-byte groups that cover localLen gives the same prefix.
	start := len(dst)
	dst = lowerBase32.AppendEncode(dst, sum[:n])[:start+t.localLen]
	dst = append(dst, '@')
	return append(dst, domain...), nil
}

// injective reports whether distinct addresses get distinct pseudonyms.
// 26 base32 characters carry 130 bits, enough to treat collisions as
// impossible, as for hash.
func (t *emailT) injective() bool { return t.localLen >= 26 }

// fakeDomain returns the reserved domain that stands for domain.
func (t *emailT) fakeDomain(domain string) string {
	if i, ok := t.domains.get(domain); ok {
		return fakeDomains[i]
	}
	var sum [1]byte
	t.prf.expand(sum[:0], 1, "domain", domain)
	i := int(sum[0]) % len(fakeDomains)
	t.domains.put(domain, i)
	return fakeDomains[i]
}

// maxCachedDomains bounds the domain cache, so a column with many distinct
// domains cannot grow it without limit. Domains past the bound are hashed
// on every value.
const maxCachedDomains = 4096

// domainCache maps a lowercased domain to the index of its reserved domain,
// so that each domain costs one HMAC instead of one per address. It is
// safe for concurrent use.
type domainCache struct {
	m sync.Map // string to int
	n atomic.Int64
}

func (c *domainCache) get(domain string) (int, bool) {
	v, ok := c.m.Load(domain)
	if !ok {
		return 0, false
	}
	return v.(int), true
}

func (c *domainCache) put(domain string, i int) {
	if c.n.Load() >= maxCachedDomains {
		return
	}
	// The clone keeps the cache from holding on to the row the domain was
	// cut from.
	if _, loaded := c.m.LoadOrStore(strings.Clone(domain), i); !loaded {
		c.n.Add(1)
	}
}

func (t *emailT) Info() Info {
	max := func(in int) int {
		if t.keepDomain {
			return in + t.localLen
		}
		return t.localLen + 1 + len("example.com")
	}
	return Info{Name: "email", Injective: t.injective(), Kinds: KindText, MaxLen: max}
}
