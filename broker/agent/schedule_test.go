package agent

import (
	"strings"
	"testing"
	"time"
)

// newScheduleAgent returns an agent with only the clock and jitter set.
func newScheduleAgent(now time.Time, jitter func(time.Duration) time.Duration) *Agent {
	return &Agent{
		now:      func() time.Time { return now },
		jitter:   jitter,
		due:      map[string]time.Time{},
		failures: map[string]int{},
		changed:  make(chan struct{}),
	}
}

func TestRenewalTime(t *testing.T) {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	c := &issued{issuedAt: start, expiresAt: start.Add(60 * time.Second)}
	tests := []struct {
		name   string
		now    time.Time
		jitter func(time.Duration) time.Duration
		want   time.Duration // after issue
	}{
		{"least jitter", start, func(time.Duration) time.Duration { return 0 }, 24 * time.Second},
		{"most jitter", start, func(n time.Duration) time.Duration { return n - 1 }, 36 * time.Second},
		{"middle", start, func(n time.Duration) time.Duration { return n / 2 }, 30 * time.Second},
		{"floor after a late start", start.Add(50 * time.Second), func(time.Duration) time.Duration { return 0 }, 51 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newScheduleAgent(tc.now, tc.jitter)
			got := a.renewalTime(c).Sub(start).Round(time.Second)
			if got != tc.want {
				t.Errorf("renewalTime = issue + %s, want issue + %s", got, tc.want)
			}
		})
	}
}

func TestRetryBackoff(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		lifetime time.Duration
		want     []time.Duration
	}{
		{"long lifetime", time.Hour, []time.Duration{1, 2, 4, 8, 16, 30, 30}},
		{"30s lifetime", 30 * time.Second, []time.Duration{1, 2, 3, 3}},
		{"tiny lifetime", 2 * time.Second, []time.Duration{1, 1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newScheduleAgent(now, nil)
			var got []string
			var want []string
			for _, w := range tc.want {
				a.retryLater("svid", tc.lifetime)
				got = append(got, a.due["svid"].Sub(now).String())
				want = append(want, (w * time.Second).String())
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("retry delays = %v, want %v", got, want)
			}
		})
	}
}

func TestTemplateHelpers(t *testing.T) {
	data := &TemplateData{Creds: map[string]map[string]string{"db": {"password": "p@ss/word"}}}
	tests := []struct {
		name, text, want string
	}{
		{"dsn escapes", `{{ dsn "postgres" "app" (cred "db").password "db:5432" "orders" }}`, "postgres://app:p%40ss%2Fword@db:5432/orders"},
		{"json", `{{ json (cred "db").password }}`, `"p@ss/word"`},
		{"indent", `{{ indent 2 "a\nb\n" }}`, "  a\n  b"},
		{"base64", `{{ base64 "hi" }}`, "aGk="},
		{"pemFirst empty", `{{ pemFirst "none" }}`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ct, err := parseTemplate("agent.yaml", &Template{Name: "t", Inline: tc.text, line: 3})
			if err != nil {
				t.Fatal(err)
			}
			out, err := ct.render(*data)
			if err != nil {
				t.Fatalf("render = %v", err)
			}
			if string(out) != tc.want {
				t.Errorf("render(%s) = %q, want %q", tc.text, out, tc.want)
			}
		})
	}

	ct, err := parseTemplate("agent.yaml", &Template{Name: "t", Inline: `{{ (cred "nope").x }}`, line: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ct.render(*data); err == nil || !strings.Contains(err.Error(), `no credential named "nope"`) || !strings.Contains(err.Error(), "agent.yaml:3") {
		t.Errorf("render(unknown credential) = %v, want an error naming it and agent.yaml:3", err)
	}
}
