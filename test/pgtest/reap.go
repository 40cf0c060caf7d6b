package pgtest

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ownerFile names the file in a cluster directory that holds the PID of
// the test process that started the cluster.
const ownerFile = "owner.pid"

// writeOwner records this process as the cluster's owner.
func (s *Server) writeOwner() error {
	return os.WriteFile(filepath.Join(s.dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644)
}

// reapStale stops clusters left running by test processes that died
// without cleanup, for example when go test killed a binary at its
// timeout, and removes their directories. It looks only at directories
// this package creates under the system temporary directory, and leaves
// any cluster whose owner still runs.
func reapStale(binDir string) {
	top := filepath.Clean(os.TempDir())
	var owners []string
	for _, pattern := range []string{"pgtest-*/pg/" + ownerFile, "*/*/pg/" + ownerFile} {
		found, _ := filepath.Glob(filepath.Join(top, pattern))
		owners = append(owners, found...)
	}
	for _, owner := range owners {
		reapOne(binDir, top, owner)
	}
}

func reapOne(binDir, top, owner string) {
	b, err := os.ReadFile(owner)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || processAlive(pid) {
		return
	}

	dir := filepath.Dir(owner)
	runAs, err := serverUser()
	if err != nil {
		return
	}
	stale := &Server{binDir: binDir, dir: dir, dataDir: filepath.Join(dir, "data"), runAs: runAs, running: true}
	if _, err := os.Stat(filepath.Join(stale.dataDir, "postmaster.pid")); err == nil {
		_, _ = stale.run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", stale.dataDir)
	}

	// Remove the test's whole temporary directory: the first path
	// element below the system temporary directory.
	rel, err := filepath.Rel(top, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return
	}
	first := strings.Split(rel, string(filepath.Separator))[0]
	_ = os.RemoveAll(filepath.Join(top, first))
}

// processAlive reports whether a process with pid exists. A PID reused by
// an unrelated process counts as alive, which only leaves a stale cluster
// in place.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
