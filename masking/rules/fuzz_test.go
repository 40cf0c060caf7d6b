package rules_test

import (
	"testing"

	"ward.dev/ward/masking/rules"
)

// FuzzParse checks that Parse never panics and that every rule it returns
// has a column and a transformer.
func FuzzParse(f *testing.F) {
	f.Add([]byte(goodRules))
	f.Add([]byte("columns:\n  a.b.c: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := rules.Parse("f.yaml", data)
		if err != nil {
			return
		}
		for _, r := range rs.Rules {
			if r.Transformer == "" || r.Column.Name == "" {
				t.Fatalf("Parse returned rule %+v", r)
			}
		}
	})
}
