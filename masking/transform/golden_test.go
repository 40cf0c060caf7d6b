package transform_test

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"ward.dev/ward/masking/transform"
)

// Masked values are a compatibility contract: a value masked today must
// mask to the same output in every later release, or joins between tables
// masked by two releases break. TestGolden pins the outputs of every
// transformer for a fixed key and a fixed set of inputs.

var update = flag.Bool("update", false, "rewrite testdata/golden.txt from the current transformers")

const goldenFile = "testdata/golden.txt"

// goldenCase is one transformer configuration and the inputs it is pinned on.
type goldenCase struct {
	name   string
	spec   string
	params map[string]string
	unique bool
	inputs func(r *rand.Rand) []string
	// entities, when set, passes a per-input entity value as well.
	entities bool
}

// goldenInputs returns the fixed edge cases followed by n generated values.
func goldenInputs(fixed []string, gen generator, n int) func(r *rand.Rand) []string {
	return func(r *rand.Rand) []string {
		out := slices.Clone(fixed)
		for range n {
			out = append(out, gen(r))
		}
		return out
	}
}

var (
	textEdges = []string{"", "a", "ab", "é", "héllo wörld", "日本語のテキスト", "\xff\xfe", "a\tb\nc", "a@b.c",
		"+1 (555) 0100-123", "  ", "Ünïcödé-Straße 12", strings.Repeat("x", 300), "emoji 🙂 here"}
	cardEdges = []string{"4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "+1 (555) 0000123",
		"12", "", "abc", "1234567", "٣٤٥ 123456", "0000000000000000000000000000000000000000"}
	emailEdges = []string{"Luis.G@Embraer.COM.br", "ftremblay@gmail.com", "no-at-sign", "@", "a@", "@b", "ü@ß.de",
		"x@y@z", "UPPER@EXAMPLE.ORG", "a.b+tag@sub.example.co.uk", ""}
	dateEdges = []string{"2020/1/5", "2020-02-30", "1999-12-31 23:59:59+02", "0001-01-01", "9999-12-31",
		"2020-123-4", "2020-1-123", "2020-01-01T10:00:00Z", "20200101", "", "2024-02-29 12:00:00.123456",
		"0000-01-05", "9999-12-30 00:00:00"}
	numberEdges = []string{"0", "-0", "1e5", " 42 ", "abc", "NaN", "-17.250", "123456789012.5", "0.001", ""}
	letterEdges = []string{"Abcdefgh", "ZZZZZZ", "abc", "Müller Schmidt", "Jean-Luc Picard", ""}
	alphaEdges  = []string{"αβγδεζηθικ", "αβγ", "ααααααα-ββββ", "abc αβγδεζ"}
)

var goldenCases = []goldenCase{
	{name: "redact", spec: "redact", inputs: goldenInputs(textEdges, genText, 8)},
	{name: "redact-with", spec: "redact", params: map[string]string{"with": "***"}, inputs: goldenInputs(textEdges, genText, 8)},
	{name: "null", spec: "null", inputs: goldenInputs(textEdges, genText, 4)},
	{name: "partial", spec: "partial", inputs: goldenInputs(textEdges, genText, 64)},
	{name: "partial-phone", spec: "partial", params: map[string]string{"keep_last": "2"}, inputs: goldenInputs(cardEdges, genCard, 32)},
	{name: "partial-first-last", spec: "partial", params: map[string]string{"keep_first": "2", "keep_last": "3"}, inputs: goldenInputs(emailEdges, genEmail, 32)},
	{name: "partial-unicode", spec: "partial", params: map[string]string{"mask": "•", "separators": "-/é ", "keep_first": "1"}, inputs: goldenInputs(textEdges, genText, 32)},
	{name: "partial-unicode-separator", spec: "partial", params: map[string]string{"separators": "日 ", "keep_last": "0"}, inputs: goldenInputs(textEdges, genText, 16)},
	{name: "email", spec: "email", inputs: goldenInputs(emailEdges, genEmail, 64)},
	{name: "email-keep", spec: "email", params: map[string]string{"domain": "keep", "local_length": "26", "key": "other"}, inputs: goldenInputs(emailEdges, genEmail, 32)},
	{name: "email-long", spec: "email", params: map[string]string{"local_length": "52"}, inputs: goldenInputs(emailEdges, genEmail, 16)},
	{name: "email-short", spec: "email", params: map[string]string{"local_length": "8"}, inputs: goldenInputs(emailEdges, genEmail, 16)},
	{name: "hash", spec: "hash", inputs: goldenInputs(textEdges, genText, 32)},
	{name: "hash-base32", spec: "hash", params: map[string]string{"bytes": "8", "encoding": "base32", "prefix": "h_"}, inputs: goldenInputs(textEdges, genText, 32)},
	{name: "hash-full", spec: "hash", params: map[string]string{"bytes": "32", "encoding": "base32"}, inputs: goldenInputs(textEdges, genText, 8)},
	{name: "tokenize", spec: "tokenize", inputs: goldenInputs(textEdges, genText, 32)},
	{name: "tokenize-domain", spec: "tokenize", params: map[string]string{"prefix": "t-", "domain": "orders"}, inputs: goldenInputs(textEdges, genText, 16)},
	{name: "fpe-ff1", spec: "fpe", inputs: goldenInputs(cardEdges, genCard, 64)},
	{name: "fpe-ff1-card", spec: "fpe", params: map[string]string{"keep_first": "6", "luhn": "true"}, inputs: goldenInputs(cardEdges, genCard, 64)},
	{name: "fpe-ff1-phone", spec: "fpe", params: map[string]string{"keep_first": "1"}, inputs: goldenInputs(cardEdges, genPhone, 64)},
	{name: "fpe-ff1-tweak", spec: "fpe", params: map[string]string{"tweak": "orders", "keep_last": "2", "key": "k2"}, inputs: goldenInputs(cardEdges, genCard, 32)},
	{name: "fpe-ff1-long", spec: "fpe", inputs: goldenInputs(cardEdges, genLongDigits, 32)},
	{name: "fpe-ff1-alnum", spec: "fpe", params: map[string]string{"alphabet": "alnum"}, inputs: goldenInputs(letterEdges, genText, 32)},
	{name: "fpe-ff1-lower", spec: "fpe", params: map[string]string{"alphabet": "lower", "keep_first": "1"}, inputs: goldenInputs(letterEdges, genText, 32)},
	{name: "fpe-ff1-greek", spec: "fpe", params: map[string]string{"alphabet": "αβγδεζηθικ"}, inputs: goldenInputs(alphaEdges, genGreek, 16)},
	{name: "fpe-ff3-1", spec: "fpe", params: map[string]string{"mode": "ff3-1"}, inputs: goldenInputs(cardEdges, genCard, 64)},
	{name: "fpe-ff3-1-letters", spec: "fpe", params: map[string]string{"mode": "ff3-1", "alphabet": "letters", "keep_last": "1"}, inputs: goldenInputs(letterEdges, genName, 32)},
	{name: "fpe-ff3-1-long", spec: "fpe", params: map[string]string{"mode": "ff3-1"}, inputs: goldenInputs(cardEdges, genLongDigits, 16)},
	{name: "date-shift", spec: "date-shift", inputs: goldenInputs(dateEdges, genTimestamp, 32)},
	{name: "date-shift-entity", spec: "date-shift", params: map[string]string{"max_days": "3650"}, entities: true, inputs: goldenInputs(dateEdges, genDate, 32)},
	{name: "noise", spec: "noise", params: map[string]string{"percent": "5"}, entities: true, inputs: goldenInputs(numberEdges, genNumber, 32)},
	{name: "generalize-month", spec: "generalize", inputs: goldenInputs(dateEdges, genTimestamp, 16)},
	{name: "generalize-year", spec: "generalize", params: map[string]string{"truncate": "year", "bucket": "1000"}, inputs: goldenInputs(numberEdges, genNumber, 16)},
	{name: "fake-name-unique", spec: "fake", params: map[string]string{"kind": "name"}, unique: true, inputs: goldenInputs(textEdges, genName, 64)},
	{name: "fake-email-unique", spec: "fake", params: map[string]string{"kind": "email"}, unique: true, inputs: goldenInputs(emailEdges, genEmail, 64)},
}

func init() {
	// Every fake kind draws from its own word lists, so each is pinned.
	for _, kind := range []string{"name", "first_name", "last_name", "email", "phone", "street", "city", "state", "zip", "country", "company", "username"} {
		goldenCases = append(goldenCases, goldenCase{
			name: "fake-" + kind, spec: "fake", params: map[string]string{"kind": kind},
			inputs: goldenInputs(textEdges, genName, 96),
		})
	}
	goldenCases = append(goldenCases, goldenCase{
		name: "fake-city-key", spec: "fake", params: map[string]string{"kind": "city", "key": "k2"},
		inputs: goldenInputs([]string{"Paris", "London", "Berlin", "Springfield"}, genName, 32),
	})
}

func genPhone(r *rand.Rand) string {
	return fmt.Sprintf("+%d (%03d) %07d", 1+r.IntN(99), r.IntN(1000), r.IntN(10000000))
}

func genLongDigits(r *rand.Rand) string {
	return randomFrom(r, "0123456789", 20+r.IntN(60))
}

func genGreek(r *rand.Rand) string {
	greek := []rune("αβγδεζηθικ")
	var b strings.Builder
	for range 6 + r.IntN(10) {
		b.WriteRune(greek[r.IntN(len(greek))])
	}
	return b.String()
}

// goldenLine is one pinned value: input, entity and output, or failed
// when Transform returned an error.
type goldenLine struct {
	in, entity, out string
	failed          bool
}

// runGolden masks inputs with a fresh transformer for c, in order, because
// a unique fake remembers earlier outputs.
func runGolden(t *testing.T, c goldenCase, inputs, entities []string) []goldenLine {
	t.Helper()
	tr := mustNewSpec(t, testKeys(t, 7), c)
	lines := make([]goldenLine, len(inputs))
	for i, in := range inputs {
		out, err := tr.Transform(in, entities[i])
		lines[i] = goldenLine{in: in, entity: entities[i], out: out, failed: err != nil}
	}
	return lines
}

func goldenEntities(c goldenCase, n int) []string {
	e := make([]string, n)
	if c.entities {
		for i := range e {
			if i%3 != 0 {
				e[i] = fmt.Sprintf("customer-%d", i%7)
			}
		}
	}
	return e
}

// TestGolden checks that every transformer still gives the outputs pinned
// in testdata/golden.txt. Run with -update only when adding a case: a
// changed output of an existing case breaks masked data already in use.
func TestGolden(t *testing.T) {
	if *update {
		writeGolden(t)
	}
	pinned := readGolden(t)
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			want, ok := pinned[c.name]
			if !ok {
				t.Fatalf("%s has no pinned outputs in %s (run go test -run TestGolden -update)", c.name, goldenFile)
			}
			inputs := make([]string, len(want))
			entities := make([]string, len(want))
			for i, w := range want {
				inputs[i], entities[i] = w.in, w.entity
			}
			got := runGolden(t, c, inputs, entities)
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("Transform(%q, %q) = %q (failed %v), want %q (failed %v)",
						want[i].in, want[i].entity, got[i].out, got[i].failed, want[i].out, want[i].failed)
				}
			}
		})
	}
}

// Golden file layout: a line "== NAME" starts a case. Each value follows
// on one line as three Go-quoted strings separated by tabs (input, entity,
// output), and the output is the bare word error when Transform failed.

func writeGolden(t *testing.T) {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("# Pinned transformer outputs under the masking key of 32 bytes 0x07.\n")
	b.WriteString("# Generated by TestGolden -update; an edit here must never be needed.\n")
	r := rand.New(rand.NewPCG(2026, 12))
	for _, c := range goldenCases {
		inputs := c.inputs(r)
		fmt.Fprintf(&b, "== %s\n", c.name)
		for _, l := range runGolden(t, c, inputs, goldenEntities(c, len(inputs))) {
			out := strconv.Quote(l.out)
			if l.failed {
				out = "error"
			}
			fmt.Fprintf(&b, "%s\t%s\t%s\n", strconv.Quote(l.in), strconv.Quote(l.entity), out)
		}
	}
	if err := os.WriteFile(goldenFile, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readGolden(t *testing.T) map[string][]goldenLine {
	t.Helper()
	f, err := os.Open(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	cases := map[string][]goldenLine{}
	name := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if c, ok := strings.CutPrefix(line, "== "); ok {
			name = c
			continue
		}
		fields := strings.Split(line, "\t")
		if len(fields) != 3 || name == "" {
			t.Fatalf("%s:%d: want three tab-separated fields after a case line", goldenFile, n)
		}
		var l goldenLine
		var errs [3]error
		l.in, errs[0] = strconv.Unquote(fields[0])
		l.entity, errs[1] = strconv.Unquote(fields[1])
		if fields[2] == "error" {
			l.failed = true
		} else {
			l.out, errs[2] = strconv.Unquote(fields[2])
		}
		for _, err := range errs {
			if err != nil {
				t.Fatalf("%s:%d: %v", goldenFile, n, err)
			}
		}
		cases[name] = append(cases[name], l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cases
}

func mustNewSpec(t *testing.T, keys *transform.Keys, c goldenCase) transform.Transformer {
	t.Helper()
	tr, err := transform.New(transform.Spec{Name: c.spec, Params: c.params, Unique: c.unique}, keys)
	if err != nil {
		t.Fatalf("New(%s, %v): %v", c.spec, c.params, err)
	}
	return tr
}

// TestGoldenConcurrent masks the pinned inputs of every case from four
// goroutines sharing one transformer, so pooled and cached state is used
// concurrently (run with -race), and checks the pinned outputs. Unique
// fakes are left out because their outputs depend on call order.
func TestGoldenConcurrent(t *testing.T) {
	pinned := readGolden(t)
	for _, c := range goldenCases {
		if c.unique {
			continue
		}
		want := pinned[c.name]
		tr := mustNewSpec(t, testKeys(t, 7), c)
		var wg sync.WaitGroup
		errs := make(chan string, 4)
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range want {
					w := want[(i+g*len(want)/4)%len(want)]
					out, err := tr.Transform(w.in, w.entity)
					if out != w.out || (err != nil) != w.failed {
						errs <- fmt.Sprintf("%s: Transform(%q, %q) = %q (%v), want %q (failed %v)", c.name, w.in, w.entity, out, err, w.out, w.failed)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	}
}

// TestGoldenAppend checks AppendTransform, where a transformer has it,
// against the pinned outputs, appending after a prefix that must survive.
func TestGoldenAppend(t *testing.T) {
	pinned := readGolden(t)
	appenders := 0
	for _, c := range goldenCases {
		if c.unique {
			continue
		}
		a, ok := mustNewSpec(t, testKeys(t, 7), c).(transform.Appender)
		if !ok {
			continue
		}
		appenders++
		for _, w := range pinned[c.name] {
			out, err := a.AppendTransform([]byte("prefix"), w.in, w.entity)
			if (err != nil) != w.failed || !w.failed && string(out) != "prefix"+w.out {
				t.Errorf("%s: AppendTransform(prefix, %q, %q) = %q (%v), want prefix%q (failed %v)",
					c.name, w.in, w.entity, out, err, w.out, w.failed)
			}
		}
	}
	if appenders == 0 {
		t.Fatal("no golden case has a transformer with AppendTransform")
	}
}
