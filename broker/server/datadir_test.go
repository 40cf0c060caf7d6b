package server

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ward.dev/ward/internal/config"
)

func openAt(t *testing.T, dir string) (*Server, error) {
	t.Helper()
	cfg := config.Defaults()
	cfg.DataDir = dir
	return Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func TestRestartReusesCA(t *testing.T) {
	dir := t.TempDir()
	s1, err := openAt(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	first := s1.CAPEM()
	s1.Close()

	s2, err := openAt(t, dir)
	if err != nil {
		t.Fatalf("reopen = %v", err)
	}
	defer s2.Close()
	if !bytes.Equal(first, s2.CAPEM()) {
		t.Error("CA certificate changed across a restart")
	}
}

func TestSecondServerOnSameDirRefused(t *testing.T) {
	dir := t.TempDir()
	s1, err := openAt(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	if s2, err := openAt(t, dir); err == nil {
		s2.Close()
		t.Fatal("second Open on the same data directory succeeded")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open = %q, want it to say the directory is in use", err)
	}
}

func TestDamagedDataDirIsRefusedNotRecreated(t *testing.T) {
	tests := []struct {
		name   string
		damage func(dir string) error
		want   string
	}{
		{"keyset missing", func(dir string) error { return os.Remove(filepath.Join(dir, fileKeyset)) }, "restore keyset.sealed"},
		{"KEK missing", func(dir string) error { return os.Remove(filepath.Join(dir, "kek.key")) }, "kek.key"},
		{"KEK readable by others", func(dir string) error { return os.Chmod(filepath.Join(dir, "kek.key"), 0o644) }, "kek.key"},
		{"CA key flipped", func(dir string) error { return flipLastByte(filepath.Join(dir, fileCAKey)) }, fileCAKey},
		{"CA key missing", func(dir string) error { return os.Remove(filepath.Join(dir, fileCAKey)) }, fileCAKey},
		{"keyset truncated", func(dir string) error { return os.Truncate(filepath.Join(dir, fileKeyset), 10) }, "keyset"},
		{"KEK replaced", func(dir string) error { return os.WriteFile(filepath.Join(dir, "kek.key"), make([]byte, 32), 0o600) }, "does not open"},
		{"CA certificate deleted", func(dir string) error { return os.Remove(filepath.Join(dir, fileCACert)) }, fileCACert},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := openAt(t, dir)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			caBefore, _ := os.ReadFile(filepath.Join(dir, fileCACert))
			if err := tt.damage(dir); err != nil {
				t.Fatal(err)
			}

			if s, err := openAt(t, dir); err == nil {
				s.Close()
				t.Fatal("Open on a damaged data directory succeeded")
			} else if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open = %q, want it to name %q", err, tt.want)
			}
			caAfter, err := os.ReadFile(filepath.Join(dir, fileCACert))
			if err == nil && !bytes.Equal(caBefore, caAfter) {
				t.Error("the CA certificate was rewritten")
			}
		})
	}
}

func flipLastByte(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b[len(b)-1] ^= 1
	return os.WriteFile(path, b, 0o600)
}

func TestInterruptedFirstStartStartsOver(t *testing.T) {
	dir := t.TempDir()
	s, err := openAt(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A first start that stopped before ca.pem and the store were written.
	for _, name := range []string{fileCACert, "ward.db", "ward.db-wal", "ward.db-shm"} {
		os.Remove(filepath.Join(dir, name))
	}

	s, err = openAt(t, dir)
	if err != nil {
		t.Fatalf("Open after an interrupted first start = %v", err)
	}
	s.Close()
	entries, _ := filepath.Glob(filepath.Join(dir, "incomplete-*", fileKeyset))
	if len(entries) != 1 {
		t.Errorf("the interrupted start's keyset was not kept aside: %v", entries)
	}
}
