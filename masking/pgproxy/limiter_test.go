package pgproxy

import (
	"testing"
	"time"
)

func TestLoginLimiterLocksAndExpires(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLoginLimiter(func() time.Time { return now })

	for i := range maxLoginFailures {
		if !l.allowed("tester") {
			t.Fatalf("allowed after %d failures = false, want true", i)
		}
		l.failed("tester")
	}
	if l.allowed("tester") {
		t.Errorf("allowed after %d failures = true, want false", maxLoginFailures)
	}
	if !l.allowed("support") {
		t.Error("another user is locked out too")
	}

	now = now.Add(failureWindow)
	if !l.allowed("tester") {
		t.Error("allowed after the window passed = false, want true")
	}

	l.failed("tester")
	l.succeeded("tester")
	if _, ok := l.failures["tester"]; ok {
		t.Error("succeeded kept the failure record")
	}
}

func TestLoginLimiterBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLoginLimiter(func() time.Time { now = now.Add(time.Millisecond); return now })
	for i := range maxTrackedUsers + 10 {
		l.failed(string(rune(i)) + "user")
	}
	if n := len(l.failures); n > maxTrackedUsers {
		t.Errorf("limiter tracks %d users, want at most %d", n, maxTrackedUsers)
	}
}
