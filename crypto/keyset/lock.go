package keyset

import (
	"fmt"
	"os"
	"syscall"
)

// lockSuffix names the lock file that serializes changes to one keyset and
// its usage file across processes, for example `ward serve` and
// `ward keys rotate` on the same data directory.
const lockSuffix = ".lock"

// lockFile takes an exclusive flock(2) on path+".lock", creating it with
// mode 0600, and returns the function that releases it.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path+lockSuffix, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}
