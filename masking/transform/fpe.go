package transform

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"unicode/utf8"

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
	// ascii is true when every alphabet character is ASCII, so an ASCII
	// value stays ASCII and can be handled byte by byte.
	ascii bool
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
	t := &fpeT{alpha: alpha, tweak: p.str("tweak", ""), ascii: isASCII(chars)}
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
	if t.ascii && isASCII(value) {
		return t.transformASCII(value)
	}

	// Positions are byte offsets, and bytes outside the alphabet, invalid
	// UTF-8 included, are copied unchanged.
	var pos, size []int
	var num []uint16
	for i, r := range value {
		n := utf8.RuneLen(r)
		if r == utf8.RuneError {
			_, n = utf8.DecodeRuneInString(value[i:])
		}
		if d, ok := t.alpha.Index(r); ok && (r != utf8.RuneError || n > 1) {
			pos, size = append(pos, i), append(size, n)
			num = append(num, d)
		}
	}

	end := len(num) - t.keepLast
	if t.luhn {
		end--
	}
	if end-t.keepFirst < 1 {
		return "", fmt.Errorf("%w: fpe: %d alphabet characters, fewer than kept ones", ErrInput, len(num))
	}
	tweak := t.tweak + "\x00" + value[:posOr(pos, t.keepFirst)]

	if err := t.encrypt(num, end, []byte(tweak)); err != nil {
		return "", err
	}
	var b strings.Builder
	b.Grow(len(value))
	last := 0
	for j, i := range pos {
		b.WriteString(value[last:i])
		b.WriteRune(t.alpha.Char(num[j]))
		last = i + size[j]
	}
	b.WriteString(value[last:])
	return b.String(), nil
}

// encrypt replaces num[keepFirst:end] with its encryption under tweak and,
// with luhn, the last numeral with the check digit.
func (t *fpeT) encrypt(num []uint16, end int, tweak []byte) error {
	middle := num[t.keepFirst:end]
	var enc []uint16
	var err error
	if t.ff1 != nil {
		enc, err = t.ff1.Encrypt(middle, tweak)
	} else {
		sum := sha256.Sum256(tweak)
		enc, err = t.ff31.Encrypt(middle, sum[:fpe.FF31TweakLen])
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInput, err)
	}
	copy(middle, enc)
	if t.luhn {
		num[len(num)-1] = luhnDigit(num[:len(num)-1])
	}
	return nil
}

// transformASCII is Transform for an ASCII value and alphabet, where every
// character is one byte. It keeps the numerals and the tweak on the stack
// for values of up to 64 alphabet characters.
func (t *fpeT) transformASCII(value string) (string, error) {
	var numBuf [64]uint16
	num := numBuf[:0]
	middleStart := 0 // byte offset of the first encrypted character
	for i := 0; i < len(value); i++ {
		if n, ok := t.alpha.Index(rune(value[i])); ok {
			if len(num) == t.keepFirst {
				middleStart = i
			}
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

	// The tweak is the tweak parameter, a zero byte, and the characters
	// before the first encrypted one, as in Transform.
	var tweakBuf [128]byte
	tweak := append(tweakBuf[:0], t.tweak...)
	tweak = append(tweak, 0)
	tweak = append(tweak, value[:middleStart]...)
	if err := t.encrypt(num, end, tweak); err != nil {
		return "", err
	}

	var b strings.Builder
	b.Grow(len(value))
	j := 0
	for i := 0; i < len(value); i++ {
		c := value[i]
		if _, ok := t.alpha.Index(rune(c)); ok {
			c = byte(t.alpha.Char(num[j]))
			j++
		}
		b.WriteByte(c)
	}
	return b.String(), nil
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
