package transform

import (
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/brianvoe/gofakeit/v7"

	"ward.dev/ward/crypto/secret"
)

// datePrefixRe is the expression scanDatePrefix replaces.
var datePrefixRe = regexp.MustCompile(`^(\d{4})[-/](\d{1,2})[-/](\d{1,2})`)

// TestScanDatePrefixMatchesRegexp compares scanDatePrefix with the regular
// expression on random strings of date characters.
func TestScanDatePrefixMatchesRegexp(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	// Strings are digit runs between separators, some with a time and some
	// cut short, so that many are dates and the rest fail at every position.
	digitRun := func(b []byte, lo, hi int) []byte {
		for range lo + r.IntN(hi-lo+1) {
			b = append(b, byte('0'+r.IntN(10)))
		}
		return b
	}
	separator := func(b []byte) []byte { return append(b, "-/-/x ٣"[r.IntN(7)]) }
	matches := 0
	for range 200000 {
		b := digitRun(nil, 3, 5)
		b = digitRun(separator(b), 0, 3)
		b = digitRun(separator(b), 0, 3)
		if r.IntN(2) == 0 {
			b = append(b, " 12:00:00+02"[:r.IntN(12)]...)
		}
		if r.IntN(4) == 0 {
			b = b[:r.IntN(len(b)+1)]
		}
		s := string(b)

		y, m, d, n, ok := scanDatePrefix(s)
		match := datePrefixRe.FindStringSubmatch(s)
		if ok != (match != nil) {
			t.Fatalf("scanDatePrefix(%q) ok = %v, want %v", s, ok, match != nil)
		}
		if !ok {
			continue
		}
		matches++
		wy, _ := strconv.Atoi(match[1])
		wm, _ := strconv.Atoi(match[2])
		wd, _ := strconv.Atoi(match[3])
		if y != wy || m != wm || d != wd || n != len(match[0]) {
			t.Fatalf("scanDatePrefix(%q) = %d, %d, %d, %d, want %d, %d, %d, %d", s, y, m, d, n, wy, wm, wd, len(match[0]))
		}
	}
	if matches < 5000 {
		t.Errorf("%d of 200000 random strings were dates, want at least 5000", matches)
	}
}

// TestAppendDateMatchesFormat compares appendDate with time.Format over
// years from before year 0 to after 9999.
func TestAppendDateMatchesFormat(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for range 20000 {
		d := time.Date(-20+r.IntN(10040), time.Month(1+r.IntN(12)), 1+r.IntN(31), 0, 0, 0, 0, time.UTC)
		if got, want := string(appendDate(nil, d)), d.Format(dateLayout); got != want {
			t.Fatalf("appendDate(%v) = %q, want %q", d, got, want)
		}
	}
}

// partialReference is partial's Transform before its ASCII fast path.
func partialReference(t *partial, value string) string {
	runes := []rune(value)
	first, last := t.first, t.last
	if first+last >= len(runes) {
		first, last = 0, 0
	}
	var b strings.Builder
	for i, r := range runes {
		if i < first || i >= len(runes)-last || strings.ContainsRune(t.separators, r) {
			b.WriteRune(r)
			continue
		}
		b.WriteRune(t.mask)
	}
	return b.String()
}

// TestPartialMatchesReference compares partial with the plain rune loop on
// random ASCII, non-ASCII and invalid UTF-8 values and separator sets.
func TestPartialMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	pieces := []string{"a", "Z", "0", "@", "-", ".", " ", "é", "日", "\xff", "\xe6\x97", "\ufffd", "🙂"}
	random := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		return b.String()
	}
	for range 2000 {
		settings := map[string]string{
			"keep_first": strconv.Itoa(r.IntN(4)),
			"keep_last":  strconv.Itoa(r.IntN(4)),
			"separators": random(r.IntN(4)),
			"mask":       []string{"*", "#", "•", "x"}[r.IntN(4)],
		}
		tr, err := newPartial(&params{m: settings, used: map[string]bool{}}, nil, false)
		if err != nil {
			t.Fatalf("newPartial(%v): %v", settings, err)
		}
		p := tr.(*partial)
		for range 20 {
			value := random(r.IntN(12))
			if r.IntN(2) == 0 {
				value = randomASCII(r, r.IntN(12))
			}
			got, _ := p.Transform(value, "")
			if want := partialReference(p, value); got != want {
				t.Fatalf("partial %v: Transform(%q) = %q, want %q", settings, value, got, want)
			}
		}
	}
}

func randomASCII(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = "ab0@-. Z"[r.IntN(8)]
	}
	return string(b)
}

// TestFPEASCIIMatchesRunePath compares fpe's byte loop for ASCII values
// with its rune loop, for several parameter sets and random values.
func TestFPEASCIIMatchesRunePath(t *testing.T) {
	keys := mustKeys(t)
	r := rand.New(rand.NewPCG(17, 18))
	for _, settings := range []map[string]string{
		{},
		{"keep_first": "6", "luhn": "true"},
		{"keep_first": "1", "keep_last": "2", "tweak": "t"},
		{"mode": "ff3-1"},
		{"alphabet": "alnum", "keep_last": "3"},
		{"mode": "ff3-1", "alphabet": "lower", "keep_first": "2"},
	} {
		tr, err := New(Spec{Name: "fpe", Params: settings}, keys)
		if err != nil {
			t.Fatalf("New(fpe, %v): %v", settings, err)
		}
		fast := tr.(*fpeT)
		slow := *fast
		slow.ascii = false
		for range 500 {
			b := make([]byte, r.IntN(90))
			for i := range b {
				b[i] = "0123456789abcxyzAB -+()"[r.IntN(23)]
			}
			value := string(b)
			got, gotErr := fast.Transform(value, "")
			want, wantErr := slow.Transform(value, "")
			if got != want || (gotErr == nil) != (wantErr == nil) {
				t.Fatalf("fpe %v: Transform(%q) = %q, %v on bytes, %q, %v on runes", settings, value, got, gotErr, want, wantErr)
			}
		}
	}
}

func mustKeys(t *testing.T) *Keys {
	t.Helper()
	k, err := NewKeys(secret.New(make([]byte, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestFakePicksMatchGofakeit checks that the list picks of the fake kinds
// draw what gofakeit's own getters draw from the same generator state.
func TestFakePicksMatchGofakeit(t *testing.T) {
	getters := map[string]func(*gofakeit.Faker) string{
		"name":       (*gofakeit.Faker).Name,
		"first_name": (*gofakeit.Faker).FirstName,
		"last_name":  (*gofakeit.Faker).LastName,
		"city":       (*gofakeit.Faker).City,
		"state":      (*gofakeit.Faker).State,
		"country":    (*gofakeit.Faker).Country,
		"company":    (*gofakeit.Faker).Company,
	}
	for kind, getter := range getters {
		for seed := range uint64(3000) {
			ours := gofakeit.NewFaker(rand.NewPCG(seed, ^seed), false)
			theirs := gofakeit.NewFaker(rand.NewPCG(seed, ^seed), false)
			// Three draws in a row also compare the generator state after each.
			for range 3 {
				if got, want := fakeKinds[kind].make(ours), getter(theirs); got != want {
					t.Fatalf("fake %s with seed %d = %q, gofakeit gives %q", kind, seed, got, want)
				}
			}
		}
	}
}

// TestFPEKeepsInvalidUTF8 masks values with bytes that are not UTF-8 and
// characters outside the alphabet: each must come back byte for byte,
// with only the digits changed.
func TestFPEKeepsInvalidUTF8(t *testing.T) {
	tr, err := New(Spec{Name: "fpe", Params: map[string]string{"keep_first": "1"}}, mustKeys(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, value := range []string{"12\xe934567", "9 876\xff\xfe543 €", "\ufffd1234567\xc3"} {
		got, err := tr.Transform(value, "")
		if err != nil {
			t.Fatalf("Transform(%q): %v", value, err)
		}
		if len(got) != len(value) {
			t.Fatalf("Transform(%q) = %q, want the same length", value, got)
		}
		for i := 0; i < len(value); i++ {
			if isDigit := value[i] >= '0' && value[i] <= '9'; isDigit != (got[i] >= '0' && got[i] <= '9') || !isDigit && got[i] != value[i] {
				t.Fatalf("Transform(%q) = %q, byte %d changed outside the digits", value, got, i)
			}
		}
		if got[0] != value[0] && value[0] >= '0' && value[0] <= '9' {
			t.Errorf("Transform(%q) = %q, want the first digit kept", value, got)
		}
	}
}
