package secret_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"ward.dev/ward/crypto/secret"
)

var material = []byte("correct horse battery staple")

func TestBytesPrintsRedacted(t *testing.T) {
	s := secret.New(material)
	type wrapper struct {
		Key secret.Bytes
	}

	tests := []struct {
		name string
		got  string
	}{
		{"String", s.String()},
		{"GoString", s.GoString()},
		{"%v", fmt.Sprintf("%v", s)},
		{"%s", fmt.Sprintf("%s", s)},
		{"%q", fmt.Sprintf("%q", s)},
		{"%x", fmt.Sprintf("%x", s)},
		{"%X", fmt.Sprintf("%X", s)},
		{"%+v", fmt.Sprintf("%+v", s)},
		{"%#v", fmt.Sprintf("%#v", s)},
		{"%d", fmt.Sprintf("%d", s)},
		{"struct %+v", fmt.Sprintf("%+v", wrapper{s})},
		{"pointer %v", fmt.Sprintf("%v", &s)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(tt.got, "horse") || strings.Contains(tt.got, "686f727365") {
				t.Fatalf("%s = %q, want no secret material", tt.name, tt.got)
			}
			if !strings.Contains(tt.got, "[redacted]") {
				t.Errorf("%s = %q, want [redacted]", tt.name, tt.got)
			}
		})
	}
}

func TestBytesMarshalRedacted(t *testing.T) {
	s := secret.New(material)

	j, err := json.Marshal(map[string]any{"key": s})
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	if want := `{"key":"[redacted]"}`; string(j) != want {
		t.Errorf("json.Marshal = %s, want %s", j, want)
	}

	text, err := s.MarshalText()
	if err != nil {
		t.Fatalf("MarshalText: %v", err)
	}
	if string(text) != "[redacted]" {
		t.Errorf("MarshalText = %q, want [redacted]", text)
	}
}

func TestNewCopiesInput(t *testing.T) {
	in := bytes.Clone(material)
	s := secret.New(in)
	clear(in)

	if !s.Equal(material) {
		t.Errorf("Equal(original) = false after clearing the input, want true")
	}
}

func TestRevealReturnsCopy(t *testing.T) {
	s := secret.New(material)
	out := s.Reveal()
	if !bytes.Equal(out, material) {
		t.Fatalf("Reveal() = %q, want %q", out, material)
	}

	clear(out)
	if !s.Equal(material) {
		t.Errorf("Equal(original) = false after clearing a revealed copy, want true")
	}
}

func TestEqual(t *testing.T) {
	s := secret.New(material)
	tests := []struct {
		name  string
		other []byte
		want  bool
	}{
		{"same", material, true},
		{"one bit differs", append([]byte{material[0] ^ 1}, material[1:]...), false},
		{"prefix", material[:5], false},
		{"longer", append(bytes.Clone(material), 0), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Equal(tt.other); got != tt.want {
				t.Errorf("Equal(%q) = %v, want %v", tt.other, got, tt.want)
			}
		})
	}
}

func TestWipeClears(t *testing.T) {
	s := secret.New(material)
	s.Wipe()

	if s.Len() != 0 {
		t.Errorf("Len() after Wipe = %d, want 0", s.Len())
	}
	if s.Reveal() != nil {
		t.Errorf("Reveal() after Wipe = %q, want nil", s.Reveal())
	}
	if s.Equal(material) {
		t.Errorf("Equal(original) after Wipe = true, want false")
	}
}

func TestRandom(t *testing.T) {
	src := bytes.NewReader(bytes.Repeat([]byte{7}, 64))
	s, err := secret.Random(src, 32)
	if err != nil {
		t.Fatalf("Random(32) error: %v", err)
	}
	if !s.Equal(bytes.Repeat([]byte{7}, 32)) {
		t.Errorf("Random(32) did not return the bytes read from the source")
	}
}

func TestRandomErrors(t *testing.T) {
	tests := []struct {
		name string
		r    io.Reader
		n    int
		want error
	}{
		{"short source", bytes.NewReader(make([]byte, 3)), 32, io.ErrUnexpectedEOF},
		{"negative length", bytes.NewReader(nil), -1, nil},
		{"huge length", bytes.NewReader(nil), 1 << 30, nil},
		{"nil source", nil, 8, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := secret.Random(tt.r, tt.n)
			if err == nil {
				t.Fatalf("Random(%d) error = nil, want an error", tt.n)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Random(%d) error = %v, want %v", tt.n, err, tt.want)
			}
		})
	}
}
