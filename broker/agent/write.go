package agent

import (
	"fmt"
	"os"
	"path/filepath"
)

// Default modes of written files: private keys and tokens are readable by
// the owner only, certificates and bundles by the group too.
const (
	modeSecret = 0o600
	modePublic = 0o640
)

// writer replaces files in one directory atomically. It is safe for
// concurrent use on distinct file names.
type writer struct {
	dir   string
	owner *Owner
}

// file is one file of an update.
type file struct {
	name string
	data []byte
	mode os.FileMode
}

// writeAll replaces each file atomically. Every file is first staged as a
// synced temporary file in the same directory with its mode, owner and
// content. Only when all are staged are they renamed over their names, in
// the caller's order (keys first). A failure while staging leaves
// every old file as it was. A rename failing part-way (rare on one
// directory) can leave a new key beside an old certificate.
func (w writer) writeAll(files []file) error {
	staged := make([]string, 0, len(files))
	defer func() {
		for _, tmp := range staged {
			os.Remove(tmp) // fails harmlessly after the rename
		}
	}()
	for _, f := range files {
		// A directory or other non-file at the target would make its rename
		// fail after earlier files were already replaced.
		if fi, err := os.Lstat(filepath.Join(w.dir, f.name)); err == nil && !fi.Mode().IsRegular() {
			return fmt.Errorf("write %s: exists and is not a regular file", filepath.Join(w.dir, f.name))
		}
		tmp, err := w.stage(f)
		if err != nil {
			return fmt.Errorf("write %s: %w", filepath.Join(w.dir, f.name), err)
		}
		staged = append(staged, tmp)
	}
	for i, f := range files {
		if err := os.Rename(staged[i], filepath.Join(w.dir, f.name)); err != nil {
			return fmt.Errorf("write %s: %w", filepath.Join(w.dir, f.name), err)
		}
	}
	return nil
}

func (w writer) stage(f file) (string, error) {
	tmp, err := os.CreateTemp(w.dir, "."+f.name+".tmp-*")
	if err != nil {
		return "", err
	}
	fail := func(err error) (string, error) {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", err
	}
	if err := tmp.Chmod(f.mode); err != nil {
		return fail(err)
	}
	if w.owner != nil {
		if err := tmp.Chown(w.owner.UID, w.owner.GID); err != nil {
			return fail(fmt.Errorf("set owner %d:%d: %w", w.owner.UID, w.owner.GID, err))
		}
	}
	if _, err := tmp.Write(f.data); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}

// fieldMode returns the mode of a credential field's file: the entry's mode
// when set, else 0600 for keys and tokens and 0640 for the rest.
func fieldMode(cr *Credential, field string) os.FileMode {
	if cr.Mode != 0 {
		return os.FileMode(cr.Mode)
	}
	switch field {
	case "cert", "bundle":
		return modePublic
	default:
		return modeSecret
	}
}
