package transform

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/brianvoe/gofakeit/v7"
	"github.com/brianvoe/gofakeit/v7/data"
)

// fakeKind produces one kind of fake value from a seeded faker, and bounds
// its length in characters.
type fakeKind struct {
	make   func(f *gofakeit.Faker) string
	maxLen int
}

func longest(lists ...[]string) int {
	total := 0
	for _, l := range lists {
		m := 0
		for _, s := range l {
			m = max(m, utf8.RuneCountInString(s))
		}
		total += m
	}
	return total
}

// Word lists of gofakeit, read once.
var (
	firstNames = data.Person["first"]
	lastNames  = data.Person["last"]
	cities     = data.Address["city"]
	states     = data.Address["state"]
	countries  = data.Address["country"]
	companies  = data.Company["name"]
)

// pick returns a kind that draws one word of list. It makes the one draw,
// f.IntN(len(list)), that gofakeit's getters such as FirstName and City
// make, so it gives their values without their two map lookups per word.
func pick(list []string) func(*gofakeit.Faker) string {
	return func(f *gofakeit.Faker) string { return list[f.IntN(len(list))] }
}

// fakeName draws a first and a last name, as gofakeit's Name does.
func fakeName(f *gofakeit.Faker) string {
	first := firstNames[f.IntN(len(firstNames))]
	return first + " " + lastNames[f.IntN(len(lastNames))]
}

// fakeKinds are the kinds of the fake transformer. The length bounds come
// from gofakeit's word lists, plus the separators each kind adds.
var fakeKinds = map[string]fakeKind{
	"name":       {fakeName, longest(firstNames, lastNames) + 1},
	"first_name": {pick(firstNames), longest(firstNames)},
	"last_name":  {pick(lastNames), longest(lastNames)},
	"email":      {fakeEmail, longest(firstNames, lastNames) + len(".@example.com")},
	"phone":      {(*gofakeit.Faker).PhoneFormatted, longest(data.Person["phone"])},
	"street":     {(*gofakeit.Faker).Street, 5 + 2 + longest(data.Address["street_prefix"], data.Address["street_name"], data.Address["street_suffix"])},
	"city":       {pick(cities), longest(cities)},
	"state":      {pick(states), longest(states)},
	"zip":        {(*gofakeit.Faker).Zip, 5},
	"country":    {pick(countries), longest(countries)},
	"company":    {pick(companies), longest(companies)},
	"username":   {fakeUsername, longest(firstNames, lastNames) + 3},
}

// fakeUsername builds first.last plus one digit. gofakeit's own usernames
// append a random word, which has no useful length bound.
func fakeUsername(f *gofakeit.Faker) string {
	first := firstNames[f.IntN(len(firstNames))]
	last := lastNames[f.IntN(len(lastNames))]
	return strings.ToLower(first+"."+last) + string(rune('0'+f.IntN(10)))
}

// fakeEmail builds first.last at a domain reserved by RFC 2606, because
// gofakeit's own e-mail addresses use real top-level domains.
func fakeEmail(f *gofakeit.Faker) string {
	domain := fakeDomains[f.IntN(len(fakeDomains))]
	first := firstNames[f.IntN(len(firstNames))]
	last := lastNames[f.IntN(len(lastNames))]
	return strings.ToLower(first+"."+last) + "@" + domain
}

// fakeT replaces a value with a realistic fake of the same kind, chosen by
// a PCG generator seeded with the keyed HMAC of the value, so one value
// always gets the same fake.
//
// On a unique column the fake gets a suffix of 8 base32 characters of the
// HMAC, inserted before "@" for e-mail. A set of the outputs seen so far
// catches the remaining collisions, and the later value then gets a longer
// suffix. The set keeps 16 bytes per distinct value.
type fakeT struct {
	mac    *keyedMAC
	kind   fakeKind
	name   string
	unique bool

	mu   sync.Mutex
	seed maphash.Seed
	seen map[uint64]uint64 // output hash to the hash of its input
}

// seededFaker is a faker over its own PCG generator. Reseeding the PCG with
// the two seed words gives exactly the sequence of rand.NewPCG with them,
// so a pooled faker draws the same values as a new one.
type seededFaker struct {
	pcg   *rand.PCG
	faker *gofakeit.Faker
}

var fakerPool = sync.Pool{New: func() any {
	pcg := rand.NewPCG(0, 0)
	return &seededFaker{pcg: pcg, faker: gofakeit.NewFaker(pcg, false)}
}}

func newFake(p *params, keys *Keys, unique bool) (Transformer, error) {
	names := make([]string, 0, len(fakeKinds))
	for n := range fakeKinds {
		names = append(names, n)
	}
	kindName := p.str("kind", "")
	kind, ok := fakeKinds[kindName]
	if !ok {
		return nil, fmt.Errorf("%w: kind is %q, want one of %s", ErrParam, kindName, strings.Join(sortedCopy(names), ", "))
	}
	// NOTE: gofakeit v7 ships English (United States) word lists only, so
	// other locales are rejected rather than silently given English data.
	if loc := p.str("locale", "en"); loc != "en" && loc != "en_US" && loc != "en-US" {
		return nil, fmt.Errorf("%w: locale %q is not available, only en", ErrParam, loc)
	}
	key := keys.derive("fake "+p.str("key", "default"), 32)
	defer clear(key)
	t := &fakeT{mac: newKeyedMAC(key), kind: kind, name: kindName, unique: unique}
	if unique {
		t.seed = maphash.MakeSeed()
		t.seen = make(map[uint64]uint64)
	}
	return t, nil
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

func (t *fakeT) Transform(value, _ string) (string, error) {
	a, b := t.mac.uint64s(t.name, value)
	sf := fakerPool.Get().(*seededFaker)
	sf.pcg.Seed(a, b)
	out := t.kind.make(sf.faker)

	// A short list such as cities can give back the input itself, so the
	// same generator draws again; the result stays deterministic.
	for i := 0; i < 8 && strings.EqualFold(out, value); i++ {
		out = t.kind.make(sf.faker)
	}
	fakerPool.Put(sf)
	if !t.unique {
		return out, nil
	}

	var buf [32]byte
	suffix := lowerBase32.EncodeToString(t.mac.sum(buf[:0], "suffix", t.name, value))
	in := maphash.String(t.seed, value)
	t.mu.Lock()
	defer t.mu.Unlock()
	for n := 8; n <= len(suffix); n += 2 {
		candidate := withSuffix(out, suffix[:n], t.name == "email")
		h := maphash.String(t.seed, candidate)
		// The same input meeting its own earlier output (a key and the
		// foreign keys that reference it) gets that output again.
		if owner, dup := t.seen[h]; !dup || owner == in {
			t.seen[h] = in
			return candidate, nil
		}
	}
	return "", fmt.Errorf("%w: fake: could not find a unique %s", ErrInput, t.name)
}

func withSuffix(s, suffix string, email bool) string {
	if at := strings.LastIndexByte(s, '@'); email && at >= 0 {
		return s[:at] + "." + suffix + s[at:]
	}
	return s + "-" + suffix
}

func (t *fakeT) Info() Info {
	n := t.kind.maxLen
	if t.unique {
		n += 1 + lowerBase32.EncodedLen(32)
	}
	return Info{Name: "fake", Injective: t.unique, Kinds: KindText, MaxLen: fixed(n), Stateful: t.unique}
}
