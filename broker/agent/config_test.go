package agent_test

import (
	"errors"
	"strings"
	"testing"

	"ward.dev/ward/broker/agent"
)

const baseConfig = `broker: {addr: "https://127.0.0.1:8443", ca_file: ca.pem}
auth: {method: join_token, join_token_file: join.token}
output_dir: out
`

func TestParseConfigValid(t *testing.T) {
	cfg, err := agent.ParseConfig("agent.yaml", []byte(baseConfig+`
credentials:
  - {name: svid, path: x509, ttl: 30s, mode: "0640"}
  - {name: peer, path: "x509/spiffe://ward.test/ns/shop/sa/orders"}
  - {name: orders, path: jwt, audience: [orders], files: {token: orders.token}}
  - {name: shopdb, path: db/shop-readonly, ttl: 10m}
  - {name: payments, path: vault/kv/payments/api}
templates:
  - {name: app, inline: "{{ .SPIFFEID }}"}
notify: {pid_file: app.pid, signal: SIGUSR1}
`))
	if err != nil {
		t.Fatalf("ParseConfig = %v, want nil", err)
	}
	if got := cfg.Notify.Signal; got != "USR1" {
		t.Errorf("Notify.Signal = %q, want USR1", got)
	}
	if got := cfg.Templates[0].Destination; got != "app" {
		t.Errorf("Templates[0].Destination = %q, want the name app", got)
	}
	if got := cfg.IdentityTTL.Duration.String(); got != "1h0m0s" {
		t.Errorf("IdentityTTL = %s, want the 1h default", got)
	}
}

func TestParseConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"unknown kind", baseConfig + "credentials:\n  - {name: db1, path: mongo/orders}\n",
			[]string{"agent.yaml:5", `credential "db1"`, `unknown credential kind "mongo"`, "x509"}},
		{"missing path", baseConfig + "credentials:\n  - {name: svid}\n",
			[]string{"agent.yaml:5", `credential "svid"`, "path: missing"}},
		{"jwt without audience", baseConfig + "credentials:\n  - {name: tok, path: jwt}\n",
			[]string{"agent.yaml:5", "audience: missing"}},
		{"x509 with audience", baseConfig + "credentials:\n  - {name: svid, path: x509, audience: [a]}\n",
			[]string{"audience applies to jwt"}},
		{"bad target id", baseConfig + "credentials:\n  - {name: svid, path: x509/orders}\n",
			[]string{"x509/spiffe://trust-domain/path"}},
		{"duplicate name", baseConfig + "credentials:\n  - {name: a, path: x509}\n  - {name: a, path: x509}\n",
			[]string{"agent.yaml:6", "used twice"}},
		{"same file twice", baseConfig + "credentials:\n  - {name: a, path: x509, files: {cert: x.pem}}\n  - {name: b, path: x509, files: {key: x.pem}}\n",
			[]string{`file "x.pem" is written by both`}},
		{"file outside dir", baseConfig + "credentials:\n  - {name: a, path: x509, files: {cert: ../x.pem}}\n",
			[]string{"files.cert", "invalid file name"}},
		{"unknown field file", baseConfig + "credentials:\n  - {name: a, path: x509, files: {token: x}}\n",
			[]string{`unknown field "token"`}},
		{"bad name", baseConfig + "credentials:\n  - {name: A/B, path: x509}\n",
			[]string{"credentials[0]", "invalid name"}},
		{"bad mode", baseConfig + "credentials:\n  - {name: a, path: x509, mode: \"0999\"}\n",
			[]string{"agent.yaml:5", "invalid mode"}},
		{"bad ttl", baseConfig + "credentials:\n  - {name: a, path: x509, ttl: soon}\n",
			[]string{"agent.yaml:5", "invalid duration"}},
		{"template without text", baseConfig + "templates:\n  - {name: t}\n",
			[]string{"agent.yaml:5", `template "t"`, "exactly one of source and inline"}},
		{"unknown key", baseConfig + "credentails: []\n",
			[]string{"agent.yaml:4", "credentails"}},
		{"http broker", "broker: {addr: \"http://x\", ca_file: c}\nauth: {method: join_token, join_token_file: j}\n",
			[]string{"broker.addr", "https://host:port"}},
		{"unknown method", "broker: {addr: \"https://x:1\", ca_file: c}\nauth: {method: password}\n",
			[]string{"auth.method", `"password"`}},
		{"kubernetes without token", "broker: {addr: \"https://x:1\", ca_file: c}\nauth: {method: kubernetes}\n",
			[]string{"auth.token_file"}},
		{"db without role", baseConfig + "credentials:\n  - {name: d, path: db/}\n",
			[]string{"want db/<role>"}},
		{"vault without path", baseConfig + "credentials:\n  - {name: v, path: vault}\n",
			[]string{"want vault/<path>"}},
		{"db file field", baseConfig + "credentials:\n  - {name: d, path: db/r, files: {cert: x}}\n",
			[]string{`unknown field "cert"`, "username, password, dsn"}},
		{"unknown signal", baseConfig + "notify: {signal: KILL}\n",
			[]string{"notify.signal", `"KILL"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := agent.ParseConfig("agent.yaml", []byte(tc.yaml))
			if !errors.Is(err, agent.ErrInvalidConfig) {
				t.Fatalf("ParseConfig = %v, want ErrInvalidConfig", err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("ParseConfig = %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestParseConfigUnknownKindSentinel(t *testing.T) {
	_, err := agent.ParseConfig("agent.yaml", []byte(baseConfig+"credentials:\n  - {name: v, path: nosuch/kv/x}\n"))
	if !strings.Contains(err.Error(), agent.ErrUnknownKind.Error()) {
		t.Errorf("ParseConfig = %v, want it to mention %v", err, agent.ErrUnknownKind)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(baseConfig))
	f.Add([]byte(baseConfig + "credentials:\n  - {name: a, path: x509, ttl: 30s}\n"))
	f.Add([]byte("templates: [{name: t, inline: '{{'}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := agent.ParseConfig("fuzz.yaml", data)
		if err == nil && cfg == nil {
			t.Fatal("ParseConfig = nil, nil")
		}
		if err != nil && !errors.Is(err, agent.ErrInvalidConfig) {
			t.Fatalf("ParseConfig error %v does not wrap ErrInvalidConfig", err)
		}
	})
}
