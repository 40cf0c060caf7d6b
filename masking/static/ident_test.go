package static

import (
	"slices"
	"testing"
)

func TestSplitIdents(t *testing.T) {
	tests := []struct {
		in   string
		sep  byte
		want []string
	}{
		{"a, b,c", ',', []string{"a", "b", "c"}},
		{`"Email Address", "select", id`, ',', []string{"Email Address", "select", "id"}},
		{`"a,b", "c""d"`, ',', []string{"a,b", `c"d`}},
		{`public."My Table"`, '.', []string{"public", "My Table"}},
		{`"x.y".z`, '.', []string{"x.y", "z"}},
	}
	for _, tc := range tests {
		got, err := splitIdents(tc.in, tc.sep)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("splitIdents(%q) = %q, %v, want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`"open`, `a,,b`, `"a" b`} {
		if got, err := splitIdents(bad, ','); err == nil {
			t.Errorf("splitIdents(%q) = %q, want an error", bad, got)
		}
	}
}
