package transform

import (
	"crypto/sha256"
	"fmt"
	"strings"

	"ward.dev/ward/crypto/fpe"
)

// alphabets are the named alphabets of the fpe transformer.
var alphabets = map[string]string{
	"digits":  fpe.Digits,
	"lower":   fpe.LowerLetters,
	"upper":   fpe.UpperLetters,
	"letters": fpe.UpperLetters + fpe.LowerLetters,
	"alnum":   fpe.Digits + fpe.UpperLetters + fpe.LowerLetters,
}

// fpeT encrypts the characters of a value that belong to an alphabet with
// FF1 or FF3-1 and leaves every other character (separators such as "-" or
// " ") in place, so the value keeps its length and shape.
//
// keep_first and keep_last keep that many alphabet characters in clear,
// such as the six-digit issuer number (BIN) of a card. The kept characters
// are part of the tweak, so equal middles under different kept prefixes
// encrypt differently. With luhn, the last digit is not encrypted but
// recomputed as the Luhn check digit of the result.
type fpeT struct {
	alpha     *fpe.Alphabet
	ff1       *fpe.FF1
	ff31      *fpe.FF31
	keepFirst int
	keepLast  int
	luhn      bool
	tweak     string
}

func newFPE(p *params, keys *Keys, _ bool) (Transformer, error) {
	mode, err := p.oneOf("mode", "ff1", "ff1", "ff3-1")
	if err != nil {
		return nil, err
	}
	chars := p.str("alphabet", "digits")
	if named, ok := alphabets[chars]; ok {
		chars = named
	}
	alpha, err := fpe.NewAlphabet(chars)
	if err != nil {
		return nil, fmt.Errorf("%w: alphabet: %w", ErrParam, err)
	}
	t := &fpeT{alpha: alpha, tweak: p.str("tweak", "")}
	if t.keepFirst, err = p.integer("keep_first", 0, 0, 64); err != nil {
		return nil, err
	}
	if t.keepLast, err = p.integer("keep_last", 0, 0, 64); err != nil {
		return nil, err
	}
	if t.luhn, err = p.boolean("luhn", false); err != nil {
		return nil, err
	}
	if t.luhn && chars != fpe.Digits {
		return nil, paramErr("luhn needs alphabet digits")
	}

	key := keys.derive("fpe "+mode+" "+p.str("key", "default"), 32)
	defer clear(key)
	if mode == "ff1" {
		t.ff1, err = fpe.NewFF1(key, alpha.Radix())
	} else {
		t.ff31, err = fpe.NewFF31(key, alpha.Radix())
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrParam, err)
	}
	return t, nil
}

func (t *fpeT) Transform(value, _ string) (string, error) {
	runes := []rune(value)
	var pos []int
	var num []uint16
	for i, r := range runes {
		if n, ok := t.alpha.Index(r); ok {
			pos = append(pos, i)
			num = append(num, n)
		}
	}

	end := len(num) - t.keepLast
	if t.luhn {
		end--
	}
	if end-t.keepFirst < 1 {
		return "", fmt.Errorf("%w: fpe: %d alphabet characters, fewer than kept ones", ErrInput, len(num))
	}
	middle := num[t.keepFirst:end]
	tweak := t.tweak + "\x00" + string(runes[:max(0, posOr(pos, t.keepFirst))])

	var enc []uint16
	var err error
	if t.ff1 != nil {
		enc, err = t.ff1.Encrypt(middle, []byte(tweak))
	} else {
		sum := sha256.Sum256([]byte(tweak))
		enc, err = t.ff31.Encrypt(middle, sum[:fpe.FF31TweakLen])
	}
	if err != nil {
		return "", fmt.Errorf("%w: fpe: %w", ErrInput, err)
	}
	copy(num[t.keepFirst:end], enc)
	if t.luhn {
		num[len(num)-1] = luhnDigit(num[:len(num)-1])
	}

	for j, i := range pos {
		runes[i] = t.alpha.Char(num[j])
	}
	return string(runes), nil
}

// posOr returns pos[i], or the length of the covered prefix when i is past
// the end, so the tweak holds exactly the characters before the middle.
func posOr(pos []int, i int) int {
	if i < len(pos) {
		return pos[i]
	}
	return 0
}

// luhnDigit returns the check digit that makes digits followed by it pass
// the Luhn (ISO/IEC 7812-1) check.
func luhnDigit(digits []uint16) uint16 {
	sum := 0
	for i := range digits {
		d := int(digits[len(digits)-1-i])
		if i%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return uint16((10 - sum%10) % 10)
}

// LuhnValid reports whether s, ignoring spaces and dashes, is a string of
// at least two digits that passes the Luhn check.
func LuhnValid(s string) bool {
	var digits []uint16
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits = append(digits, uint16(r-'0'))
		case strings.ContainsRune(" -", r):
		default:
			return false
		}
	}
	if len(digits) < 2 {
		return false
	}
	return luhnDigit(digits[:len(digits)-1]) == digits[len(digits)-1]
}

func (t *fpeT) Info() Info {
	// The original check digit is dropped under luhn, so two inputs that
	// differ only there give the same output.
	// Only text columns: an integer column would read an output with a
	// leading zero as a shorter number, so two inputs could collide.
	return Info{Name: "fpe", Injective: !t.luhn, Kinds: KindText, MaxLen: same}
}
