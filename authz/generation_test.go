package authz_test

import (
	"testing"

	"ward.dev/ward/authz"
)

func TestGenerationChangesWithDecisions(t *testing.T) {
	modelPath, policyPath := writeFiles(t, basePolicy)
	e, err := authz.New(modelPath, policyPath)
	if err != nil {
		t.Fatal(err)
	}
	last := e.Generation()
	steps := []struct {
		name    string
		do      func() error
		changes bool
	}{
		{"decision", func() error { e.Decide(webID, "dev", "db/orders", "read"); return nil }, false},
		{"reload", e.Reload, true},
		{"rejected reload", func() error {
			writePolicy(t, policyPath, basePolicy+"p, "+webID+", dev, db/x, read, alow\n")
			if e.Reload() == nil {
				t.Fatal("Reload() of a bad policy = nil, want an error")
			}
			return nil
		}, false},
		{"quarantine", func() error { e.Quarantine(webID, "test"); return nil }, true},
		{"release", func() error { e.Release(webID); return nil }, true},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		g := e.Generation()
		if changed := g != last; changed != s.changes {
			t.Errorf("Generation() after %s = %d, was %d; want changed %v", s.name, g, last, s.changes)
		}
		last = g
	}
}
