package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/template"
)

// maxTemplateSize bounds a template source file and a rendered template.
const maxTemplateSize = 1 << 20

// TemplateData is the dot value of a template: Creds maps credential name
// to its fields (cert, key, bundle, token, spiffe_id, expires_at, lease_id),
// and SPIFFEID is the agent's own ID.
type TemplateData struct {
	Creds    map[string]map[string]string
	SPIFFEID string
}

// templateFuncs are the helpers a template may call:
//
//	cred NAME                     the fields of a credential; fails on an unknown name
//	json VALUE                    VALUE as JSON
//	dsn SCHEME USER PASSWORD HOST DB   a URL such as postgres://u:p@h:5432/db, escaped
//	pemBlocks TYPE TEXT           the PEM blocks of TYPE in TEXT, concatenated
//	pemFirst TEXT                 the first PEM block of TEXT (the leaf of a chain)
//	base64 TEXT                   standard base64
//	indent N TEXT                 TEXT with every line indented by N spaces
func templateFuncs(data *TemplateData) template.FuncMap {
	return template.FuncMap{
		"cred": func(name string) (map[string]string, error) {
			c, ok := data.Creds[name]
			if !ok {
				return nil, fmt.Errorf("no credential named %q", name)
			}
			return c, nil
		},
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"dsn": func(scheme, user, password, host, db string) string {
			u := url.URL{Scheme: scheme, User: url.UserPassword(user, password), Host: host, Path: "/" + db}
			return u.String()
		},
		"pemBlocks": func(typ, text string) string {
			var out []byte
			rest := []byte(text)
			for {
				var b *pem.Block
				b, rest = pem.Decode(rest)
				if b == nil {
					return string(out)
				}
				if b.Type == typ {
					out = append(out, pem.EncodeToMemory(b)...)
				}
			}
		},
		"pemFirst": func(text string) string {
			b, _ := pem.Decode([]byte(text))
			if b == nil {
				return ""
			}
			return string(pem.EncodeToMemory(b))
		},
		"base64": func(text string) string { return base64.StdEncoding.EncodeToString([]byte(text)) },
		"indent": func(n int, text string) string {
			pad := strings.Repeat(" ", n)
			return pad + strings.ReplaceAll(strings.TrimRight(text, "\n"), "\n", "\n"+pad)
		},
	}
}

// compiledTemplate is a parsed template entry.
type compiledTemplate struct {
	cfg  *Template
	tmpl *template.Template
	data *TemplateData
}

// parseTemplate reads and parses one template entry. Its name in errors is
// the source file, or the config file and line for an inline template, so
// text/template's own line numbers point into the right text.
func parseTemplate(cfgPath string, t *Template) (*compiledTemplate, error) {
	text, name := t.Inline, fmt.Sprintf("%s:%d(inline %s)", cfgPath, t.line, t.Name)
	if t.Source != "" {
		b, err := os.ReadFile(t.Source)
		if err != nil {
			return nil, fmt.Errorf("template %q: read source: %w", t.Name, err)
		}
		if len(b) > maxTemplateSize {
			return nil, fmt.Errorf("template %q: source %s larger than %d bytes", t.Name, t.Source, maxTemplateSize)
		}
		text, name = string(b), t.Source
	}
	ct := &compiledTemplate{cfg: t, data: &TemplateData{}}
	tmpl, err := template.New(name).Option("missingkey=error").Funcs(templateFuncs(ct.data)).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("template %q: %w", t.Name, err)
	}
	ct.tmpl = tmpl
	return ct, nil
}

// render executes the template over data; the output is returned only if
// execution succeeded, so a failing template never replaces a good file.
func (ct *compiledTemplate) render(data TemplateData) ([]byte, error) {
	*ct.data = data
	var buf bytes.Buffer
	if err := ct.tmpl.Execute(&limitedBuffer{&buf}, ct.data); err != nil {
		return nil, fmt.Errorf("template %q: %w", ct.cfg.Name, err)
	}
	return buf.Bytes(), nil
}

// limitedBuffer fails a write that would grow the output past
// maxTemplateSize.
type limitedBuffer struct{ b *bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if l.b.Len()+len(p) > maxTemplateSize {
		return 0, fmt.Errorf("output larger than %d bytes", maxTemplateSize)
	}
	return l.b.Write(p)
}

// CheckTemplate parses text as an agent template would be parsed and
// returns the parse error, if any. It executes nothing.
func CheckTemplate(name, text string) error {
	_, err := template.New(name).Option("missingkey=error").Funcs(templateFuncs(&TemplateData{})).Parse(text)
	return err
}
