package transform

import (
	"strings"
	"unicode/utf8"
)

// redact replaces every value with a fixed text.
type redact struct{ with string }

func newRedact(p *params, _ *Keys, _ bool) (Transformer, error) {
	return redact{with: p.str("with", "REDACTED")}, nil
}

func (r redact) Transform(string, string) (string, error) { return r.with, nil }

func (r redact) Info() Info {
	return Info{Name: "redact", Kinds: KindText, MaxLen: fixed(utf8.RuneCountInString(r.with))}
}

// null replaces every value with NULL. Callers check Info().Null; Transform
// returns "" for callers that have no NULL.
type null struct{}

func newNull(*params, *Keys, bool) (Transformer, error) { return null{}, nil }

func (null) Transform(string, string) (string, error) { return "", nil }

func (null) Info() Info {
	return Info{Name: "null", Null: true, Kinds: KindAny, MaxLen: fixed(0)}
}

// partial keeps the first and last characters and replaces the rest with a
// mask character, except separators, which stay in place.
type partial struct {
	first, last int
	mask        rune
	separators  string
}

// defaultSeparators are kept by partial: the characters that give e-mail
// addresses, phone numbers and card numbers their shape.
const defaultSeparators = "@-. "

func newPartial(p *params, _ *Keys, _ bool) (Transformer, error) {
	first, err := p.integer("keep_first", 0, 0, 1000)
	if err != nil {
		return nil, err
	}
	last, err := p.integer("keep_last", 4, 0, 1000)
	if err != nil {
		return nil, err
	}
	mask := p.str("mask", "*")
	if utf8.RuneCountInString(mask) != 1 {
		return nil, paramErr("mask must be one character")
	}
	m, _ := utf8.DecodeRuneInString(mask)
	return partial{first: first, last: last, mask: m, separators: p.str("separators", defaultSeparators)}, nil
}

func (t partial) Transform(value, _ string) (string, error) {
	runes := []rune(value)

	// A value no longer than the kept parts would come through whole, so it
	// is masked entirely instead.
	first, last := t.first, t.last
	if first+last >= len(runes) {
		first, last = 0, 0
	}

	var b strings.Builder
	b.Grow(len(value))
	for i, r := range runes {
		if i < first || i >= len(runes)-last || strings.ContainsRune(t.separators, r) {
			b.WriteRune(r)
			continue
		}
		b.WriteRune(t.mask)
	}
	return b.String(), nil
}

func (partial) Info() Info { return Info{Name: "partial", Kinds: KindText, MaxLen: same} }
