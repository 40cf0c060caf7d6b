package transform_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"ward.dev/ward/crypto/secret"
	"ward.dev/ward/masking/transform"
)

func testKeys(t testing.TB, fill byte) *transform.Keys {
	t.Helper()
	b := make([]byte, 32)
	for i := range b {
		b[i] = fill
	}
	k, err := transform.NewKeys(secret.New(b))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustNew(t testing.TB, keys *transform.Keys, name string, params map[string]string) transform.Transformer {
	t.Helper()
	tr, err := transform.New(transform.Spec{Name: name, Params: params}, keys)
	if err != nil {
		t.Fatalf("New(%s, %v): %v", name, params, err)
	}
	return tr
}

// generator produces random inputs of the shape a transformer expects.
type generator func(r *rand.Rand) string

func randomFrom(r *rand.Rand, chars string, n int) string {
	var b strings.Builder
	for range n {
		b.WriteByte(chars[r.IntN(len(chars))])
	}
	return b.String()
}

func genText(r *rand.Rand) string {
	return randomFrom(r, "abcdefghijklmnopqrstuvwxyz ABC-.@0123456789", 1+r.IntN(30))
}

func genName(r *rand.Rand) string {
	return randomFrom(r, "abcdefghijklmnopqrstuvwxyzABC", 5+r.IntN(10)) + " " + randomFrom(r, "abcdefghijklmnopqrstuvwxyz-", 1+r.IntN(10))
}

func genEmail(r *rand.Rand) string {
	return randomFrom(r, "abcdefghij.", 1+r.IntN(12)) + "@" + randomFrom(r, "abcdefghij", 3+r.IntN(5)) + ".com"
}

func genCard(r *rand.Rand) string {
	return "4111 " + randomFrom(r, "0123456789", 4) + " " + randomFrom(r, "0123456789", 4) + " " + randomFrom(r, "0123456789", 4)
}

func genDate(r *rand.Rand) string {
	return fmt.Sprintf("%04d-%02d-%02d", 1950+r.IntN(70), 1+r.IntN(12), 1+r.IntN(28))
}

func genTimestamp(r *rand.Rand) string {
	return genDate(r) + fmt.Sprintf(" %02d:%02d:%02d", r.IntN(24), r.IntN(60), r.IntN(60))
}

func genNumber(r *rand.Rand) string {
	return fmt.Sprintf("%d.%02d", r.IntN(100000), r.IntN(100))
}

// property is one transformer with its input generator and the checks that
// must hold for every input.
type property struct {
	name   string
	spec   string
	params map[string]string
	gen    generator
	check  func(in, out string) error
}

func sameLength(in, out string) error {
	if utf8.RuneCountInString(in) != utf8.RuneCountInString(out) {
		return fmt.Errorf("length %d, want %d", utf8.RuneCountInString(out), utf8.RuneCountInString(in))
	}
	return nil
}

var (
	hexRe   = regexp.MustCompile(`^[0-9a-f]{32}$`)
	b32Re   = regexp.MustCompile(`^h_[a-z2-7]{13}$`)
	tokenRe = regexp.MustCompile(`^tok_[A-Za-z0-9_-]+$`)
	emailRe = regexp.MustCompile(`^[a-z2-7]{16}@example\.(com|net|org)$`)
	dateRe  = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
)

func matches(re *regexp.Regexp) func(in, out string) error {
	return func(_, out string) error {
		if !re.MatchString(out) {
			return fmt.Errorf("%q does not match %s", out, re)
		}
		return nil
	}
}

var properties = []property{
	{"redact", "redact", nil, genText, func(_, out string) error {
		if out != "REDACTED" {
			return fmt.Errorf("got %q", out)
		}
		return nil
	}},
	{"partial keeps shape", "partial", map[string]string{"keep_first": "1", "keep_last": "2"}, genText, func(in, out string) error {
		if err := sameLength(in, out); err != nil {
			return err
		}
		rin, rout := []rune(in), []rune(out)
		for i := range rin {
			if strings.ContainsRune("@-. ", rin[i]) && rin[i] != rout[i] {
				return fmt.Errorf("separator %q at %d changed", rin[i], i)
			}
		}
		if len(rin) > 3 && rout[0] != rin[0] {
			return fmt.Errorf("first character changed")
		}
		return nil
	}},
	{"email fake domain", "email", nil, genEmail, matches(emailRe)},
	{"email keep domain", "email", map[string]string{"domain": "keep"}, genEmail, func(in, out string) error {
		if in[strings.LastIndexByte(in, '@'):] != out[strings.LastIndexByte(out, '@'):] {
			return fmt.Errorf("domain changed")
		}
		return nil
	}},
	{"hash hex", "hash", nil, genText, matches(hexRe)},
	{"hash base32", "hash", map[string]string{"bytes": "8", "encoding": "base32", "prefix": "h_"}, genText, matches(b32Re)},
	{"tokenize", "tokenize", nil, genText, matches(tokenRe)},
	{"fpe ff1 card luhn", "fpe", map[string]string{"keep_first": "6", "luhn": "true"}, genCard, func(in, out string) error {
		if err := sameLength(in, out); err != nil {
			return err
		}
		if in[:7] != out[:7] {
			return fmt.Errorf("BIN changed: %q", out)
		}
		if !transform.LuhnValid(out) {
			return fmt.Errorf("%q fails the Luhn check", out)
		}
		return nil
	}},
	{"fpe ff3-1 letters", "fpe", map[string]string{"mode": "ff3-1", "alphabet": "letters"}, genName, func(in, out string) error {
		if err := sameLength(in, out); err != nil {
			return err
		}
		for i := range in {
			isLetter := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
			if isLetter(in[i]) != isLetter(out[i]) {
				return fmt.Errorf("position %d changed class: %q", i, out)
			}
		}
		return nil
	}},
	{"fake name", "fake", map[string]string{"kind": "name"}, genText, func(_, out string) error {
		if !strings.Contains(out, " ") {
			return fmt.Errorf("%q is not a full name", out)
		}
		return nil
	}},
	{"fake email", "fake", map[string]string{"kind": "email"}, genEmail, matches(regexp.MustCompile(`^[a-z.'-]+@example\.(com|net|org)$`))},
	{"date-shift", "date-shift", map[string]string{"max_days": "10"}, genTimestamp, func(in, out string) error {
		a, b := in[:10], out[:10]
		if a == b {
			return fmt.Errorf("date did not move")
		}
		if in[10:] != out[10:] {
			return fmt.Errorf("time of day changed")
		}
		return nil
	}},
	{"noise", "noise", map[string]string{"percent": "5"}, genNumber, func(in, out string) error {
		var a, b float64
		fmt.Sscan(in, &a)
		fmt.Sscan(out, &b)
		if b < a*0.95-0.01 || b > a*1.05+0.01 {
			return fmt.Errorf("%s is more than 5%% from %s", out, in)
		}
		return nil
	}},
	{"generalize date", "generalize", map[string]string{"truncate": "year"}, genDate, func(in, out string) error {
		if out != in[:4]+"-01-01" {
			return fmt.Errorf("got %q", out)
		}
		return nil
	}},
	{"generalize number", "generalize", map[string]string{"bucket": "1000"}, genNumber, func(in, out string) error {
		if !strings.HasSuffix(out, "000.00") && out != "0.00" {
			return fmt.Errorf("got %q", out)
		}
		return nil
	}},
}

// TestProperties checks, for 300 random inputs per transformer, its own
// property, that the output is deterministic across two instances built
// from the same key, and that MaxLen bounds it.
func TestProperties(t *testing.T) {
	keys := testKeys(t, 1)
	for _, p := range properties {
		t.Run(p.name, func(t *testing.T) {
			a := mustNew(t, keys, p.spec, p.params)
			b := mustNew(t, testKeys(t, 1), p.spec, p.params)
			r := rand.New(rand.NewPCG(7, 7))
			for range 300 {
				in := p.gen(r)
				out, err := a.Transform(in, "")
				if err != nil {
					t.Fatalf("Transform(%q): %v", in, err)
				}
				if err := p.check(in, out); err != nil {
					t.Fatalf("Transform(%q) = %q: %v", in, out, err)
				}
				again, _ := b.Transform(in, "")
				if again != out {
					t.Fatalf("Transform(%q) = %q, then %q from a second instance", in, out, again)
				}
				if n := a.Info().MaxLen(utf8.RuneCountInString(in)); n >= 0 && utf8.RuneCountInString(out) > n {
					t.Fatalf("Transform(%q) = %q, longer than MaxLen %d", in, out, n)
				}
			}
		})
	}
}

// TestKeyChangesOutput checks that every keyed transformer gives another
// output under another key.
func TestKeyChangesOutput(t *testing.T) {
	for _, p := range properties {
		if !transform.NeedsKey(p.spec) {
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			a := mustNew(t, testKeys(t, 1), p.spec, p.params)
			b := mustNew(t, testKeys(t, 2), p.spec, p.params)
			r := rand.New(rand.NewPCG(3, 3))
			differ := 0
			for range 50 {
				in := p.gen(r)
				x, _ := a.Transform(in, "")
				y, _ := b.Transform(in, "")
				if x != y {
					differ++
				}
			}
			if differ < 40 {
				t.Errorf("outputs differ under another key for %d of 50 inputs, want at least 40", differ)
			}
		})
	}
}

func TestTokenizeRoundTrip(t *testing.T) {
	keys := testKeys(t, 1)
	tok, err := transform.NewTokenizer(keys, map[string]string{"domain": "email"})
	if err != nil {
		t.Fatal(err)
	}
	values := []string{"", "a", "alice@example.com", "ünïcødé", strings.Repeat("x", 1000)}
	tokens, err := tok.TokenizeBatch(values)
	if err != nil {
		t.Fatal(err)
	}
	back, err := tok.DetokenizeBatch(tokens)
	if err != nil {
		t.Fatal(err)
	}
	for i := range values {
		if back[i] != values[i] {
			t.Errorf("Detokenize(Tokenize(%q)) = %q", values[i], back[i])
		}
	}

	other, _ := transform.NewTokenizer(keys, map[string]string{"domain": "phone"})
	if _, err := other.Detokenize(tokens[2]); !errors.Is(err, transform.ErrToken) {
		t.Errorf("Detokenize in another domain: error = %v, want ErrToken", err)
	}
	flipped := []byte(tokens[2])
	flipped[len(flipped)-1] ^= 1
	if _, err := tok.Detokenize(string(flipped)); !errors.Is(err, transform.ErrToken) {
		t.Errorf("Detokenize(modified token): error = %v, want ErrToken", err)
	}
}

func TestDateShiftPerEntity(t *testing.T) {
	tr := mustNew(t, testKeys(t, 1), "date-shift", map[string]string{"max_days": "100"})
	a, _ := tr.Transform("2020-01-10", "customer 7")
	b, _ := tr.Transform("2020-03-10", "customer 7")
	// 2020-01-10 to 2020-03-10 is 60 days, and the shifted dates keep the gap.
	if gap := daysBetween(t, a, b); gap != 60 {
		t.Errorf("gap between shifted dates = %d days, want 60", gap)
	}
}

func daysBetween(t *testing.T, a, b string) int {
	t.Helper()
	var ya, ma, dA, yb, mb, dB int
	fmt.Sscanf(a, "%d-%d-%d", &ya, &ma, &dA)
	fmt.Sscanf(b, "%d-%d-%d", &yb, &mb, &dB)
	ta := dateOrdinal(ya, ma, dA)
	tb := dateOrdinal(yb, mb, dB)
	return tb - ta
}

// dateOrdinal counts days from a fixed epoch (proleptic Gregorian).
func dateOrdinal(y, m, d int) int {
	if m < 3 {
		y--
		m += 12
	}
	return 365*y + y/4 - y/100 + y/400 + (153*(m-3)+2)/5 + d
}

func TestFakeUniqueNoCollisions(t *testing.T) {
	tr, err := transform.New(transform.Spec{Name: "fake", Params: map[string]string{"kind": "first_name"}, Unique: true}, testKeys(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for i := range 5000 {
		in := fmt.Sprintf("person-%d", i)
		out, err := tr.Transform(in, "")
		if err != nil {
			t.Fatal(err)
		}
		if prev, dup := seen[out]; dup {
			t.Fatalf("Transform(%q) = %q, same as for %q", in, out, prev)
		}
		seen[out] = in
		if again, _ := tr.Transform(in, ""); again != out {
			t.Fatalf("Transform(%q) = %q, then %q", in, out, again)
		}
	}
}

func TestNewErrors(t *testing.T) {
	keys := testKeys(t, 1)
	tests := []struct {
		name string
		spec transform.Spec
		keys *transform.Keys
		want error
	}{
		{"unknown transformer", transform.Spec{Name: "scramble"}, keys, transform.ErrUnknown},
		{"missing key", transform.Spec{Name: "hash"}, nil, transform.ErrNoKey},
		{"unknown param", transform.Spec{Name: "hash", Params: map[string]string{"lenght": "8"}}, keys, transform.ErrParam},
		{"bad bytes", transform.Spec{Name: "hash", Params: map[string]string{"bytes": "99"}}, keys, transform.ErrParam},
		{"non-injective on unique", transform.Spec{Name: "redact", Unique: true}, keys, transform.ErrParam},
		{"short hash on unique", transform.Spec{Name: "hash", Params: map[string]string{"bytes": "8"}, Unique: true}, keys, transform.ErrParam},
		{"fake kind missing", transform.Spec{Name: "fake"}, keys, transform.ErrParam},
		{"fake locale", transform.Spec{Name: "fake", Params: map[string]string{"kind": "name", "locale": "de"}}, keys, transform.ErrParam},
		{"luhn on letters", transform.Spec{Name: "fpe", Params: map[string]string{"alphabet": "letters", "luhn": "true"}}, keys, transform.ErrParam},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := transform.New(tc.spec, tc.keys)
			if !errors.Is(err, tc.want) {
				t.Errorf("New(%+v) error = %v, want %v", tc.spec, err, tc.want)
			}
		})
	}
}

func TestTransformInputErrors(t *testing.T) {
	keys := testKeys(t, 1)
	tests := []struct {
		name, spec string
		params     map[string]string
		in         string
	}{
		{"fpe too few digits", "fpe", nil, "12-34"},
		{"email without at", "email", nil, "alice"},
		{"date-shift not a date", "date-shift", nil, "yesterday"},
		{"noise not a number", "noise", nil, "ten"},
		{"date-shift invalid day", "date-shift", nil, "2021-02-30"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := mustNew(t, keys, tc.spec, tc.params)
			out, err := tr.Transform(tc.in, "")
			if !errors.Is(err, transform.ErrInput) {
				t.Errorf("Transform(%q) = %q, %v, want ErrInput", tc.in, out, err)
			}
			if err != nil && strings.Contains(err.Error(), tc.in) {
				t.Errorf("error %q contains the input", err)
			}
		})
	}
}

func TestDateShiftSlashDates(t *testing.T) {
	tr := mustNew(t, testKeys(t, 1), "date-shift", nil)
	a, err := tr.Transform("1962/2/18", "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := tr.Transform("1962-02-18", "")
	if a != b || !dateRe.MatchString(a) {
		t.Errorf("Transform(1962/2/18) = %q, Transform(1962-02-18) = %q, want the same ISO date", a, b)
	}
}

// TestFakeKindsWithinMaxLen checks every fake kind against the length
// bound that rule validation relies on, on unique and other columns.
func TestFakeKindsWithinMaxLen(t *testing.T) {
	keys := testKeys(t, 3)
	kinds := []string{"name", "first_name", "last_name", "email", "phone", "street", "city", "state", "zip", "country", "company", "username"}
	for _, kind := range kinds {
		for _, unique := range []bool{false, true} {
			tr, err := transform.New(transform.Spec{Name: "fake", Params: map[string]string{"kind": kind}, Unique: unique}, keys)
			if err != nil {
				t.Fatal(err)
			}
			limit := tr.Info().MaxLen(0)
			for i := range 2000 {
				out, err := tr.Transform(fmt.Sprintf("value %d", i), "")
				if err != nil {
					t.Fatal(err)
				}
				if n := utf8.RuneCountInString(out); n > limit || out == "" {
					t.Fatalf("fake %s (unique %v): Transform = %q, %d characters, MaxLen %d", kind, unique, out, n, limit)
				}
			}
		}
	}
}

func TestNullTransformer(t *testing.T) {
	tr := mustNew(t, nil, "null", nil)
	if !tr.Info().Null || tr.Info().Injective {
		t.Errorf("null Info = %+v, want Null and not Injective", tr.Info())
	}
	if out, err := tr.Transform("anything", ""); out != "" || err != nil {
		t.Errorf("Transform = %q, %v, want empty and nil", out, err)
	}
}

// TestEmailCaseAndInjectivity checks which addresses share a pseudonym.
// By default letter case is folded, so one person keeps one pseudonym.
// From local_length 26 the transformer claims to be injective, so
// addresses that fold together must stay apart.
func TestEmailCaseAndInjectivity(t *testing.T) {
	keys := testKeys(t, 7)
	folded := mustNew(t, keys, "email", nil)
	injective := mustNew(t, keys, "email", map[string]string{"local_length": "26", "domain": "keep"})
	if !injective.Info().Injective || folded.Info().Injective {
		t.Fatalf("Injective = %v at local_length 26 and %v at 16, want true and false",
			injective.Info().Injective, folded.Info().Injective)
	}
	pairs := []struct{ name, a, b string }{
		{"letter case", "Alice@example.com", "alice@example.com"},
		{"domain case", "alice@Example.com", "alice@example.com"},
		{"kelvin sign", "\u212Aelly@example.com", "kelly@example.com"},
		{"invalid bytes", "jos\xe9@example.com", "jos\xe8@example.com"},
		{"nul in local part", "a\x00b@c", "a@b\x00c"},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			a, errA := injective.Transform(p.a, "")
			b, errB := injective.Transform(p.b, "")
			if errA != nil || errB != nil || a == b {
				t.Errorf("Transform(%q) = %q, %v and Transform(%q) = %q, %v; want two different pseudonyms", p.a, a, errA, p.b, b, errB)
			}
		})
	}

	a, _ := folded.Transform("Alice@Example.com", "")
	b, _ := folded.Transform("alice@example.com", "")
	if a != b {
		t.Errorf("Transform(Alice@Example.com) = %q, Transform(alice@example.com) = %q; want the same pseudonym at the default length", a, b)
	}
}
