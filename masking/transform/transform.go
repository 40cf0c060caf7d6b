// Package transform is the catalogue of masking transformers: redact, null,
// partial, email, hash, tokenize, fpe, fake, date-shift, noise and
// generalize. A transformer maps the text form of one column value (as
// PostgreSQL prints it in COPY text format, or as a CSV or JSON field holds
// it) to its masked text.
//
// Every keyed transformer derives its own key from one masking key
// ([Keys]) with HKDF-SHA256 (RFC 5869), so the same input, key and
// transformer parameters give the same output in every file, database and
// process, and joins on masked columns survive. hash uses HMAC-SHA256
// (RFC 2104), tokenize uses the deterministic AEAD AES-SIV (RFC 5297,
// opened by Tink), and fpe uses FF1 or FF3-1 (NIST SP 800-38G Rev. 1).
//
// Security contract: transformers never log and never return their input
// on failure. An input a transformer cannot mask is an error, and callers
// must stop rather than copy the value through. Errors name the transformer
// and the problem, never the value.
package transform

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Sentinel errors for callers that branch on the cause.
var (
	// ErrUnknown means no transformer has the requested name.
	ErrUnknown = errors.New("unknown transformer")
	// ErrParam means a parameter is missing, unknown or invalid.
	ErrParam = errors.New("invalid transformer parameter")
	// ErrInput means a value cannot be masked by the transformer, for
	// example a card number with too few digits for fpe.
	ErrInput = errors.New("value cannot be masked")
	// ErrToken means a token is malformed or was not made with this key.
	ErrToken = errors.New("invalid token")
)

// Transformer masks single values. Implementations are safe for concurrent
// use; one whose Info has Stateful set serializes calls internally.
type Transformer interface {
	// Transform returns the masked form of value. entity is the value of
	// the column the rule names as its entity (date-shift uses it so that
	// every date of one customer moves by the same amount), or "".
	// Callers may pass strings that share memory with a buffer they reuse,
	// so Transform keeps no reference to value or entity, nor to parts of
	// them, once it returns: a cache must copy what it keeps.
	Transform(value, entity string) (string, error)
	// Info describes the transformer for rule validation.
	Info() Info
}

// Appender is implemented by transformers that can append the masked form
// of a value to a buffer. A caller that masks many values (the masking
// proxy) so spares the string Transform would allocate for each. Its
// output and errors match Transform's. On an error, dst may have grown.
type Appender interface {
	AppendTransform(dst []byte, value, entity string) ([]byte, error)
}

// Kind is a class of column types a transformer can read and produce.
type Kind uint8

// Column kinds, from PostgreSQL types: text covers char, varchar, text and
// citext; numeric covers integer, numeric and floating-point types; date
// covers date and timestamp types.
const (
	KindText Kind = 1 << iota
	KindNumeric
	KindDate
	KindAny = KindText | KindNumeric | KindDate
)

// String returns the kind names joined by "|".
func (k Kind) String() string {
	var names []string
	for _, n := range []struct {
		k    Kind
		name string
	}{{KindText, "text"}, {KindNumeric, "numeric"}, {KindDate, "date"}} {
		if k&n.k != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, "|")
}

// Info describes a transformer's output for rule validation.
type Info struct {
	Name string
	// Injective is true when distinct inputs always give distinct outputs
	// (a permutation such as fpe or tokenize, or a fake that resolves
	// collisions), so the transformer may run on UNIQUE and primary key
	// columns.
	Injective bool
	// Null is true when the output is always NULL.
	Null bool
	// Kinds lists the column kinds the transformer accepts; its output has
	// the kind of its input.
	Kinds Kind
	// MaxLen is the longest output in characters for an input of at most
	// inLen characters, or -1 when there is no bound.
	MaxLen func(inLen int) int
	// Stateful is true when Transform remembers earlier outputs (fake on a
	// unique column); such a transformer serializes calls internally.
	Stateful bool
}

// Spec selects and configures a transformer.
type Spec struct {
	Name   string
	Params map[string]string
	// Unique is true when the column is UNIQUE or part of a primary key.
	Unique bool
}

type constructor func(p *params, keys *Keys, unique bool) (Transformer, error)

var catalogue = map[string]constructor{
	"redact":     newRedact,
	"null":       newNull,
	"partial":    newPartial,
	"email":      newEmail,
	"hash":       newHash,
	"tokenize":   newTokenize,
	"fpe":        newFPE,
	"fake":       newFake,
	"date-shift": newDateShift,
	"noise":      newNoise,
	"generalize": newGeneralize,
}

// Names returns the names of all transformers, sorted.
func Names() []string {
	names := make([]string, 0, len(catalogue))
	for n := range catalogue {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// keyedTransformers need a masking key.
var keyedTransformers = []string{"email", "hash", "tokenize", "fpe", "fake", "date-shift", "noise"}

// NeedsKey reports whether the named transformer needs a masking key.
func NeedsKey(name string) bool { return slices.Contains(keyedTransformers, name) }

// New returns the transformer that spec names. keys may be nil when the
// transformer is not keyed. Errors wrap ErrUnknown or ErrParam.
func New(spec Spec, keys *Keys) (Transformer, error) {
	build, ok := catalogue[spec.Name]
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknown, spec.Name, strings.Join(Names(), ", "))
	}
	if NeedsKey(spec.Name) && keys == nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, ErrNoKey)
	}

	p := &params{m: spec.Params, used: map[string]bool{}}
	t, err := build(p, keys, spec.Unique)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	if err := p.unused(); err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	if spec.Unique && !t.Info().Injective {
		return nil, fmt.Errorf("%s: %w: not injective, so it cannot mask a UNIQUE or primary key column", spec.Name, ErrParam)
	}
	return t, nil
}

// params reads transformer parameters and remembers which were read, so
// that a misspelt parameter is an error instead of being ignored.
type params struct {
	m    map[string]string
	used map[string]bool
}

func (p *params) str(name, def string) string {
	p.used[name] = true
	if v, ok := p.m[name]; ok {
		return v
	}
	return def
}

func (p *params) oneOf(name, def string, allowed ...string) (string, error) {
	v := p.str(name, def)
	if !slices.Contains(allowed, v) {
		return "", fmt.Errorf("%w: %s is %q, want one of %s", ErrParam, name, v, strings.Join(allowed, ", "))
	}
	return v, nil
}

func (p *params) integer(name string, def, lo, hi int) (int, error) {
	v := p.str(name, strconv.Itoa(def))
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%w: %s is %q, want an integer from %d to %d", ErrParam, name, v, lo, hi)
	}
	return n, nil
}

func (p *params) number(name string, def, lo, hi float64) (float64, error) {
	v := p.str(name, strconv.FormatFloat(def, 'g', -1, 64))
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < lo || f > hi {
		return 0, fmt.Errorf("%w: %s is %q, want a number from %g to %g", ErrParam, name, v, lo, hi)
	}
	return f, nil
}

func (p *params) boolean(name string, def bool) (bool, error) {
	v := p.str(name, strconv.FormatBool(def))
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: %s is %q, want true or false", ErrParam, name, v)
	}
	return b, nil
}

func (p *params) unused() error {
	var extra []string
	for k := range p.m {
		if !p.used[k] {
			extra = append(extra, k)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	sort.Strings(extra)
	return fmt.Errorf("%w: unknown parameter %s", ErrParam, strings.Join(extra, ", "))
}

func same(n int) int { return n }

func fixed(n int) func(int) int { return func(int) int { return n } }

func unbounded(int) int { return -1 }
