package wardtest

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
)

// cleanEnv returns the process environment without WARD_* variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WARD_") {
			env = append(env, kv)
		}
	}
	return env
}

// envWatcher copies the server's stdout to a file and picks out the
// `export WARD_ADDR=` and `export WARD_CACERT=` lines it prints at start.
type envWatcher struct {
	file  io.Writer
	ready chan struct{}

	mu      sync.Mutex
	partial []byte
	addr    string
	cacert  string
	done    bool
}

func newEnvWatcher(file io.Writer) *envWatcher {
	return &envWatcher{file: file, ready: make(chan struct{})}
}

func (w *envWatcher) Write(p []byte) (int, error) {
	if _, err := w.file.Write(p); err != nil {
		return 0, err
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	w.partial = append(w.partial, p...)
	sc := bufio.NewScanner(bytes.NewReader(w.partial))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "export WARD_ADDR="); ok {
			w.addr = unquote(v)
		}
		if v, ok := strings.CutPrefix(line, "export WARD_CACERT="); ok {
			w.cacert = unquote(v)
		}
	}
	if w.addr != "" && w.cacert != "" {
		w.done = true
		w.partial = nil
		close(w.ready)
	}
	return len(p), nil
}

// unquote removes the single quotes that ward's shellQuote adds around a
// path with unusual characters.
func unquote(v string) string {
	v = strings.TrimSpace(v)
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return strings.ReplaceAll(v[1:len(v)-1], `'\''`, `'`)
	}
	return v
}

// pickPort returns 127.0.0.1:PORT with a port that was free a moment ago.
func pickPort(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("wardtest: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func logSize(path string) int64 {
	info, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return info.Size()
}

// tailFrom returns what was appended to a file after offset.
func tailFrom(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

// tail returns the last 4 KiB of a file, for failure messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}
