package keyset

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"
)

// usageReserve is how many encryptions a process claims at a time. The usage
// file records, for the primary key, the sum of all blocks claimed so far:
// before its claimed block runs out, Encrypt adds usageReserve to the file
// under the lock file. The recorded count is therefore an upper bound on the
// real one, also when several processes share the keyset, and a crash only
// wastes the unused part of a block.
const usageReserve = 1 << 16

// usageSuffix names the usage file next to the keyset: "keyset.bin" has its
// usage in "keyset.bin.usage.json".
const usageSuffix = ".usage.json"

// usageFile is the JSON layout of the usage file. It holds no secret, and
// it is not authenticated: whoever can write it can delay an automatic
// rotation, which is why it is written with mode 0600 like the keyset.
type usageFile struct {
	Version int          `json:"version"`
	Keys    []usageEntry `json:"keys"`
}

// usageEntry records one key's creation time and encryption count.
type usageEntry struct {
	ID          uint32    `json:"id"`
	Created     time.Time `json:"created"`
	Encryptions uint64    `json:"encryptions"`
	// Estimated marks a creation time taken from the keyset file's
	// modification time because the usage file had no entry for the key.
	Estimated bool `json:"estimated,omitempty"`
}

func usagePath(keysetPath string) string { return keysetPath + usageSuffix }

// readUsage returns the entries of the usage file by key id. A missing file
// returns an empty map.
func readUsage(keysetPath string) (map[uint32]usageEntry, error) {
	path := usagePath(keysetPath)
	data, err := readFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[uint32]usageEntry{}, nil
	}
	if err != nil {
		return nil, err
	}

	var f usageFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("usage file %s is invalid: %v", path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("usage file %s has version %d, want 1", path, f.Version)
	}
	entries := make(map[uint32]usageEntry, len(f.Keys))
	for _, e := range f.Keys {
		entries[e.ID] = e
	}
	return entries, nil
}

// mergeUsage combines entries read from disk with entries held in memory, so
// that two processes updating one usage file do not lower each other's
// counts: the earliest creation time and the highest count win.
func mergeUsage(disk, mem map[uint32]usageEntry) map[uint32]usageEntry {
	out := make(map[uint32]usageEntry, len(disk)+len(mem))
	for id, e := range disk {
		out[id] = e
	}
	for id, e := range mem {
		prev, ok := out[id]
		if !ok {
			out[id] = e
			continue
		}
		if !e.Created.IsZero() && (prev.Created.IsZero() || e.Created.Before(prev.Created)) {
			prev.Created = e.Created
		}
		prev.Encryptions = max(prev.Encryptions, e.Encryptions)
		out[id] = prev
	}
	return out
}

// writeUsage writes entries for the key ids in keep, sorted by id.
func writeUsage(keysetPath string, entries map[uint32]usageEntry, keep []uint32) error {
	f := usageFile{Version: 1}
	for _, id := range keep {
		if e, ok := entries[id]; ok {
			f.Keys = append(f.Keys, e)
		}
	}
	slices.SortFunc(f.Keys, func(a, b usageEntry) int { return cmp.Compare(a.ID, b.ID) })

	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(usagePath(keysetPath), append(data, '\n'), true)
}

// fileModTime returns the modification time of path, or the zero time.
func fileModTime(path string) time.Time {
	info, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return info.ModTime()
}
