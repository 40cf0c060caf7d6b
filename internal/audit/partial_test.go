package audit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fullFile writes at most room more bytes to its file and then fails as a
// full disk does, after writing part of the buffer.
type fullFile struct {
	*os.File
	room int
}

func (f *fullFile) Write(b []byte) (int, error) {
	if len(b) <= f.room {
		f.room -= len(b)
		return f.File.Write(b)
	}
	n, err := f.File.Write(b[:f.room])
	f.room = 0
	if err != nil {
		return n, err
	}
	return n, syscall.ENOSPC
}

// TestPartialRecordRemoved fills the disk in the middle of a record: the
// write fails, the partial line is cut off, and a record written once
// there is room again is on a line of its own.
func TestPartialRecordRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, []byte("key"), func() time.Time { return time.Unix(0, 0) })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Write(Record{Caller: "first", Action: "issue", Decision: "allow"}); err != nil {
		t.Fatal(err)
	}
	full := &fullFile{File: l.f.(*os.File), room: 10}
	l.f = full
	if err := l.Write(Record{Caller: "second", Action: "issue", Decision: "allow"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Write on a full disk = %v, want ErrUnavailable", err)
	}
	full.room = 1 << 20
	if err := l.Write(Record{Caller: "third", Action: "issue", Decision: "allow"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"first"`) || !strings.Contains(lines[1], `"third"`) || !strings.HasPrefix(lines[1], "{") {
		t.Errorf("audit file = %q, want the first and third records on lines of their own", data)
	}
}
