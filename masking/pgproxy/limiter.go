package pgproxy

import (
	"sync"
	"time"
)

// Limits of password guessing per user name.
const (
	maxLoginFailures = 10
	failureWindow    = 5 * time.Minute
	// maxTrackedUsers bounds the limiter's memory. When it is full the
	// oldest records are dropped.
	maxTrackedUsers = 10000
)

// loginLimiter rejects logins for a user name after maxLoginFailures
// failed attempts within failureWindow, until the window has passed. It is
// safe for concurrent use.
type loginLimiter struct {
	clock func() time.Time

	mu       sync.Mutex
	failures map[string]failureRecord
}

type failureRecord struct {
	count int
	first time.Time
}

func newLoginLimiter(clock func() time.Time) *loginLimiter {
	return &loginLimiter{clock: clock, failures: map[string]failureRecord{}}
}

// allowed reports whether user may try to log in now.
func (l *loginLimiter) allowed(user string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.failures[user]
	if !ok {
		return true
	}
	if l.clock().Sub(r.first) >= failureWindow {
		delete(l.failures, user)
		return true
	}
	return r.count < maxLoginFailures
}

// failed records a failed login of user.
func (l *loginLimiter) failed(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	r, ok := l.failures[user]
	if !ok || now.Sub(r.first) >= failureWindow {
		r = failureRecord{first: now}
	}
	r.count++
	if !ok && len(l.failures) >= maxTrackedUsers {
		l.dropOldest()
	}
	l.failures[user] = r
}

// succeeded clears the failure record of user.
func (l *loginLimiter) succeeded(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, user)
}

func (l *loginLimiter) dropOldest() {
	var oldest string
	var at time.Time
	for u, r := range l.failures {
		if oldest == "" || r.first.Before(at) {
			oldest, at = u, r.first
		}
	}
	delete(l.failures, oldest)
}
