package static_test

import (
	"bytes"
	"encoding/json"
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

// FuzzMaskJSONL checks that masking arbitrary JSON Lines never panics and
// that every line it writes is a JSON object.
func FuzzMaskJSONL(f *testing.F) {
	seed, _ := os.ReadFile("testdata/customer.jsonl")
	f.Add(string(seed))
	f.Add(`{"email":"a@b.c","n":1.5e3,"x":[1,{"y":null}]}` + "\n" + `{"email":null}`)
	f.Add(`{"email":"a@b.c"} trailing`)
	rs, err := rules.Parse("r.yaml", []byte("columns:\n  public.customer.email: hash\n  public.customer.n: noise\n"))
	if err != nil {
		f.Fatal(err)
	}
	plan, err := rules.Compile(rs, nil, testKeys(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, input string) {
		var out bytes.Buffer
		if _, err := static.MaskJSONL(strings.NewReader(input), &out, plan, "public.customer", "f.jsonl"); err != nil {
			return
		}
		for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
			if line == "" {
				continue
			}
			var obj map[string]any
			if err := json.Unmarshal([]byte(line), &obj); err != nil {
				t.Fatalf("output line %q is not a JSON object: %v", line, err)
			}
		}
	})
}
