package transform

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// dateLayout is the ISO 8601 date that starts PostgreSQL's date and
// timestamp text output (DateStyle ISO). Outputs always use it.
const dateLayout = "2006-01-02"

// splitDate parses the leading date of a date or timestamp text and returns
// it with the rest of the text (time of day, zone) that callers keep. The
// date is a four-digit year, a one- or two-digit month and day, separated
// by "-" or "/", which PostgreSQL also accepts as input.
func splitDate(value string) (time.Time, string, error) {
	y, mo, d, n, ok := scanDatePrefix(value)
	if !ok {
		return time.Time{}, "", fmt.Errorf("%w: not a date in YYYY-MM-DD form", ErrInput)
	}
	t := time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC)
	if t.Year() != y || int(t.Month()) != mo || t.Day() != d {
		return time.Time{}, "", fmt.Errorf("%w: not a valid calendar date", ErrInput)
	}
	return t, value[n:], nil
}

// scanDatePrefix reads what the regular expression
// ^(\d{4})[-/](\d{1,2})[-/](\d{1,2}) matches at the start of s and
// returns the three numbers and the length of the match. Month and day take
// two digits when there are two, as the greedy expression does.
func scanDatePrefix(s string) (year, month, day, n int, ok bool) {
	if len(s) < len("2006-1-2") {
		return 0, 0, 0, 0, false
	}
	for i := range 4 {
		if !isDigit(s[i]) {
			return 0, 0, 0, 0, false
		}
		year = year*10 + int(s[i]-'0')
	}
	n = 4
	for _, field := range []*int{&month, &day} {
		if n >= len(s) || s[n] != '-' && s[n] != '/' {
			return 0, 0, 0, 0, false
		}
		n++
		if n >= len(s) || !isDigit(s[n]) {
			return 0, 0, 0, 0, false
		}
		*field = int(s[n] - '0')
		n++
		if n < len(s) && isDigit(s[n]) {
			*field = *field*10 + int(s[n]-'0')
			n++
		}
	}
	return year, month, day, n, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// appendDate appends t in dateLayout, as t.Format(dateLayout) would.
func appendDate(dst []byte, t time.Time) []byte {
	y, m, d := t.Date()
	if y < 0 || y > 9999 {
		return t.AppendFormat(dst, dateLayout)
	}
	return append(dst,
		byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+int(m)/10), byte('0'+int(m)%10), '-',
		byte('0'+d/10), byte('0'+d%10))
}

// dateShift moves a date by a keyed number of days in [-max_days,
// max_days], never 0. With an entity column, every date of one entity moves
// by the same number of days, so intervals between them survive.
type dateShift struct {
	mac     *keyedMAC
	maxDays int
}

func newDateShift(p *params, keys *Keys, _ bool) (Transformer, error) {
	n, err := p.integer("max_days", 30, 1, 3650)
	if err != nil {
		return nil, err
	}
	key := keys.derive("date-shift "+p.str("key", "default"), 32)
	defer clear(key)
	return &dateShift{mac: newKeyedMAC(key), maxDays: n}, nil
}

func (t *dateShift) Transform(value, entity string) (string, error) {
	d, rest, err := splitDate(value)
	if err != nil {
		return "", fmt.Errorf("date-shift: %w", err)
	}
	// The seed is the date itself, or the entity: HMAC over the parts
	// "entity" and entity joined by a zero byte.
	var buf [64]byte
	var a uint64
	if entity != "" {
		a, _ = t.mac.uint64s("entity", entity)
	} else {
		a, _ = t.mac.uint64s(string(appendDate(buf[:0], d)))
	}
	shift := int(a%uint64(2*t.maxDays)) - t.maxDays
	if shift >= 0 {
		shift++
	}
	out := appendDate(buf[:0], d.AddDate(0, 0, shift))
	return string(append(out, rest...)), nil
}

func (t *dateShift) Info() Info {
	return Info{Name: "date-shift", Kinds: KindDate, MaxLen: same}
}

// noise moves a number by a keyed fraction of itself in [-percent,
// +percent] and keeps its number of decimal places.
type noise struct {
	mac     *keyedMAC
	percent float64
}

func newNoise(p *params, keys *Keys, _ bool) (Transformer, error) {
	pct, err := p.number("percent", 10, 0.01, 100)
	if err != nil {
		return nil, err
	}
	key := keys.derive("noise "+p.str("key", "default"), 32)
	defer clear(key)
	return &noise{mac: newKeyedMAC(key), percent: pct}, nil
}

func decimals(value string) int {
	if i := strings.IndexByte(value, '.'); i >= 0 {
		return len(value) - i - 1
	}
	return 0
}

func (t *noise) Transform(value, entity string) (string, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return "", fmt.Errorf("%w: noise: not a finite number", ErrInput)
	}
	a, _ := t.mac.uint64s(value, entity)
	r := float64(a>>11)/float64(1<<53)*2 - 1
	return strconv.FormatFloat(v*(1+r*t.percent/100), 'f', decimals(value), 64), nil
}

func (t *noise) Info() Info {
	// A number grows by at most one digit, plus a sign.
	return Info{Name: "noise", Kinds: KindNumeric, MaxLen: func(in int) int { return in + 2 }}
}

// generalize coarsens numbers to the lower bound of a bucket of the given
// size, and dates to the first day of their month or year.
type generalize struct {
	bucket float64
	unit   string
}

func newGeneralize(p *params, _ *Keys, _ bool) (Transformer, error) {
	bucket, err := p.number("bucket", 10, 1e-9, 1e18)
	if err != nil {
		return nil, err
	}
	unit, err := p.oneOf("truncate", "month", "month", "year")
	if err != nil {
		return nil, err
	}
	return generalize{bucket: bucket, unit: unit}, nil
}

func (t generalize) Transform(value, _ string) (string, error) {
	if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil && !math.IsInf(v, 0) && !math.IsNaN(v) {
		return strconv.FormatFloat(math.Floor(v/t.bucket)*t.bucket, 'f', decimals(value), 64), nil
	}
	d, rest, err := splitDate(value)
	if err != nil {
		return "", fmt.Errorf("%w: generalize: neither a number nor a date", ErrInput)
	}
	month := d.Month()
	if t.unit == "year" {
		month = time.January
	}
	var buf [64]byte
	out := appendDate(buf[:0], time.Date(d.Year(), month, 1, 0, 0, 0, 0, time.UTC))
	if rest != "" {
		// Time of day would narrow the date back down, so it becomes midnight.
		out = append(out, zeroTime(rest)...)
	}
	return string(out), nil
}

// zeroTime replaces the digits of a time-of-day suffix with zeros and keeps
// the zone, so "12:34:56+02" becomes "00:00:00+02".
func zeroTime(rest string) string {
	b := []byte(rest)
	zone := len(b)
	for i := 1; i < len(b); i++ {
		if b[i] == '+' || b[i] == '-' || b[i] == 'Z' {
			zone = i
			break
		}
	}
	for i := range zone {
		if b[i] >= '0' && b[i] <= '9' {
			b[i] = '0'
		}
	}
	return string(b)
}

func (t generalize) Info() Info {
	return Info{Name: "generalize", Kinds: KindNumeric | KindDate, MaxLen: func(in int) int { return in + 1 }}
}
