package wardtest

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// AllowSealed lets Start return a server that started sealed (its key
// provider unreachable, so it serves only 503 over a throwaway certificate)
// instead of failing the test. Sealed reports the state, and WaitReady
// waits for the server to unseal. The server then listens on a port that
// wardtest picked, because a sealed server prints no address.
func AllowSealed() Option { return func(o *options) { o.allowSealed = true } }

// Sealed reports whether the running server has not unsealed yet: it
// started sealed (see AllowSealed) and has printed no address since.
func (s *Server) Sealed() bool {
	s.mu.Lock()
	watch := s.watch
	s.mu.Unlock()
	if watch == nil {
		return false
	}
	select {
	case <-watch.ready:
		return false
	default:
		return true
	}
}

// WaitReady waits up to timeout for a sealed server to unseal, print its
// address and return 200 for /v1/health, and fails the test otherwise.
func (s *Server) WaitReady(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	s.mu.Lock()
	watch, exited := s.watch, s.exited
	s.mu.Unlock()
	if watch == nil {
		tb.Fatal("wardtest: WaitReady: server not running")
	}

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-watch.ready:
	case <-exited:
		tb.Fatalf("wardtest: ward serve exited while sealed; log:\n%s", tail(s.LogPath()))
	case <-timer.C:
		tb.Fatalf("wardtest: ward serve still sealed after %s; log:\n%s", timeout, tail(s.LogPath()))
	}
	if err := s.becomeReady(exited, watch); err != nil {
		tb.Fatalf("wardtest: %v; log:\n%s", err, tail(s.LogPath()))
	}
}

// pollSealed returns a channel that is closed once GET /v1/health returns
// {"status":"sealed"}. The sealed server's certificate is a throwaway one
// that no bundle holds, so only this probe skips verification, and it
// sends no credentials.
func (s *Server) pollSealed(exited <-chan struct{}) <-chan struct{} {
	sealed := make(chan struct{})
	addr := s.Addr()
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}},
		Timeout:   5 * time.Second,
	}
	go func() {
		deadline := time.Now().Add(startTimeout)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				return
			default:
			}
			resp, err := client.Get(addr + "/v1/health")
			if err == nil {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), `"sealed"`) {
					close(sealed)
					return
				}
				if resp.StatusCode == http.StatusOK {
					return // unsealed: the printed address will follow
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return sealed
}
