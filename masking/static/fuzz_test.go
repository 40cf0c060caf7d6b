package static_test

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"

	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/static"
)

// FuzzMaskDump checks that masking an arbitrary SQL script never panics
// and, when it succeeds, never copies a masked COPY row through.
func FuzzMaskDump(f *testing.F) {
	seed, _ := os.ReadFile("testdata/dump.sql")
	f.Add(string(seed))
	f.Add("COPY public.customer (email) FROM stdin;\nluisg@embraer.com.br\na@b\\x4\n\\.\n")
	f.Add("INSERT INTO public.customer (email) VALUES (E'a\\'@b', 'x''y'), (NULL);\n")
	rs, err := rules.Parse("r.yaml", []byte("columns:\n  public.customer.email: hash\n"))
	if err != nil {
		f.Fatal(err)
	}
	plan, err := rules.Compile(rs, nil, testKeys(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, script string) {
		var out bytes.Buffer
		err := static.MaskDump(strings.NewReader(script), &out, plan, nil, "f.sql", nil)
		block := "COPY public.customer (email) FROM stdin;\nluisg@embraer.com.br\n"
		if err == nil && strings.Contains(script, block) && strings.Contains(out.String(), block) {
			t.Fatalf("original e-mail survived masking")
		}
		_, _ = io.Copy(io.Discard, &out)
	})
}
