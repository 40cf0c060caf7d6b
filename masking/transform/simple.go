package transform

import (
	"strings"
	"unicode/utf8"
	"unsafe"
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
	// asciiSeparators has bit c set when the ASCII character c is a
	// separator.
	asciiSeparators [2]uint64
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
	t := &partial{first: first, last: last, mask: m, separators: p.str("separators", defaultSeparators)}
	for i := 0; i < len(t.separators); i++ {
		if c := t.separators[i]; c < utf8.RuneSelf {
			t.asciiSeparators[c/64] |= 1 << (c % 64)
		}
	}
	return t, nil
}

// isSeparator matches what strings.ContainsRune(t.separators, r) returns.
func (t *partial) isSeparator(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= 0 && t.asciiSeparators[r/64]&(1<<(r%64)) != 0
	}
	return strings.ContainsRune(t.separators, r)
}

func (t *partial) Transform(value, entity string) (string, error) {
	b, _ := t.AppendTransform(make([]byte, 0, len(value)), value, entity)
	return unsafe.String(unsafe.SliceData(b), len(b)), nil
}

func (t *partial) AppendTransform(dst []byte, value, _ string) ([]byte, error) {
	if t.mask < utf8.RuneSelf && isASCII(value) {
		return t.appendASCII(dst, value), nil
	}

	// The loop reads value rune by rune as []rune(value) would, so an
	// invalid byte counts as one character and comes out as U+FFFD.
	n := utf8.RuneCountInString(value)

	// A value no longer than the kept parts would come through whole, so it
	// is masked entirely instead.
	first, last := t.first, t.last
	if first+last >= n {
		first, last = 0, 0
	}

	i := 0
	for _, r := range value {
		if i < first || i >= n-last || t.isSeparator(r) {
			dst = utf8.AppendRune(dst, r)
		} else {
			dst = utf8.AppendRune(dst, t.mask)
		}
		i++
	}
	return dst, nil
}

// appendASCII is AppendTransform for an ASCII value and mask, where every
// character is one byte.
func (t *partial) appendASCII(dst []byte, value string) []byte {
	first, last := t.first, t.last
	if first+last >= len(value) {
		first, last = 0, 0
	}

	mask := byte(t.mask)
	for i := 0; i < len(value); i++ {
		c := value[i]
		if i < first || i >= len(value)-last || t.asciiSeparators[c/64]&(1<<(c%64)) != 0 {
			dst = append(dst, c)
		} else {
			dst = append(dst, mask)
		}
	}
	return dst
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func (*partial) Info() Info { return Info{Name: "partial", Kinds: KindText, MaxLen: same} }
