package transform

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/tink-crypto/tink-go/v2/daead"
	"github.com/tink-crypto/tink-go/v2/daead/aessiv"
	"github.com/tink-crypto/tink-go/v2/insecuresecretdataaccess"
	tinkkeyset "github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/secretdata"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// MaxBatch is the largest number of values Tokenize and Detokenize accept
// in one call.
const MaxBatch = 10000

// MaxTokenInput is the longest value, in bytes, that tokenize accepts.
const MaxTokenInput = 64 << 10

// sivKeyLen is the AES-SIV key length: two AES-256 keys (RFC 5297).
const sivKeyLen = 64

// Tokenizer turns values into reversible tokens with the deterministic
// AEAD AES-SIV. Tokens are computed by this package's encrypter, which
// gives the output of Tink's AES-SIV, and opened by Tink. The same value
// gives the same token, so tokens still join. A Tokenizer is safe for
// concurrent use.
//
// Token layout: the prefix (default "tok_"), then the unpadded URL-safe
// base64 (RFC 4648 section 5) of the AES-SIV output: a 16-byte synthetic IV
// followed by the ciphertext, as long as the value. The associated data is
// the domain parameter, so a token of one domain does not detokenize in
// another.
type Tokenizer struct {
	daead  tink.DeterministicAEAD
	siv    *sivEncrypter // encrypts as daead does, with the key schedules kept
	prefix string
	domain []byte
}

// NewTokenizer returns a tokenizer configured by params: key (the key name,
// default "default"), domain (associated data, default "default") and prefix
// (default "tok_").
func NewTokenizer(keys *Keys, settings map[string]string) (*Tokenizer, error) {
	if keys == nil {
		return nil, ErrNoKey
	}
	p := &params{m: settings, used: map[string]bool{}}
	t, err := newTokenizer(p, keys)
	if err != nil {
		return nil, err
	}
	return t, p.unused()
}

func newTokenize(p *params, keys *Keys, _ bool) (Transformer, error) {
	return newTokenizer(p, keys)
}

func newTokenizer(p *params, keys *Keys) (*Tokenizer, error) {
	prefix := p.str("prefix", "tok_")
	if strings.ContainsAny(prefix, "\t\n\r\\,\"") {
		return nil, paramErr("prefix has a tab, newline, comma, quote or backslash")
	}
	raw := keys.derive("tokenize "+p.str("key", "default"), sivKeyLen)
	defer clear(raw)

	sivParams, err := aessiv.NewParameters(sivKeyLen, aessiv.VariantNoPrefix)
	if err != nil {
		return nil, err
	}
	key, err := aessiv.NewKey(secretdata.NewBytesFromData(raw, insecuresecretdataaccess.Token{}), 0, sivParams)
	if err != nil {
		return nil, err
	}
	km := tinkkeyset.NewManager()
	id, err := km.AddKey(key)
	if err != nil {
		return nil, err
	}
	if err := km.SetPrimary(id); err != nil {
		return nil, err
	}
	handle, err := km.Handle()
	if err != nil {
		return nil, err
	}
	d, err := daead.New(handle)
	if err != nil {
		return nil, err
	}
	domain := []byte(p.str("domain", "default"))
	siv, err := newSIVEncrypter(raw, domain)
	if err != nil {
		return nil, err
	}
	return &Tokenizer{daead: d, siv: siv, prefix: prefix, domain: domain}, nil
}

// Transform returns the token of value.
func (t *Tokenizer) Transform(value, _ string) (string, error) {
	if len(value) > MaxTokenInput {
		return "", fmt.Errorf("%w: tokenize: value longer than %d bytes", ErrInput, MaxTokenInput)
	}
	var ctBuf [256]byte
	ct := t.siv.appendEncrypt(ctBuf[:0], value)
	var tokenBuf [384]byte
	token := append(tokenBuf[:0], t.prefix...)
	token = base64.RawURLEncoding.AppendEncode(token, ct)
	return string(token), nil
}

// Detokenize returns the value that token stands for. It returns ErrToken
// when the token is malformed or was made under another key or domain.
func (t *Tokenizer) Detokenize(token string) (string, error) {
	body, ok := strings.CutPrefix(token, t.prefix)
	if len(body) > base64.RawURLEncoding.EncodedLen(16+MaxTokenInput) {
		return "", fmt.Errorf("%w: longer than any token", ErrToken)
	}
	if !ok {
		return "", fmt.Errorf("%w: missing prefix %q", ErrToken, t.prefix)
	}
	ct, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return "", fmt.Errorf("%w: not URL-safe base64", ErrToken)
	}
	pt, err := t.daead.DecryptDeterministically(ct, t.domain)
	if err != nil {
		return "", fmt.Errorf("%w: authentication failed", ErrToken)
	}
	return string(pt), nil
}

// TokenizeBatch returns the tokens of values, in order. It accepts at most
// MaxBatch values.
func (t *Tokenizer) TokenizeBatch(values []string) ([]string, error) {
	return t.batch(values, t.Transform)
}

// DetokenizeBatch returns the values of tokens, in order. The error names
// the index of the first invalid token.
func (t *Tokenizer) DetokenizeBatch(tokens []string) ([]string, error) {
	return t.batch(tokens, func(s, _ string) (string, error) { return t.Detokenize(s) })
}

func (t *Tokenizer) batch(in []string, f func(string, string) (string, error)) ([]string, error) {
	if len(in) > MaxBatch {
		return nil, fmt.Errorf("%w: batch of %d values, maximum %d", ErrInput, len(in), MaxBatch)
	}
	out := make([]string, len(in))
	for i, v := range in {
		r, err := f(v, "")
		if err != nil {
			return nil, fmt.Errorf("value %d: %w", i, err)
		}
		out[i] = r
	}
	return out, nil
}

// Info describes tokenize: injective, output 4/3 the length of the input
// plus the prefix and 22 characters of synthetic IV.
func (t *Tokenizer) Info() Info {
	return Info{Name: "tokenize", Injective: true, Kinds: KindText, MaxLen: func(in int) int {
		// Input length is in characters; a character is up to 4 bytes.
		return len(t.prefix) + base64.RawURLEncoding.EncodedLen(16+4*in)
	}}
}
