package pgproxy_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// startPgbouncer runs PgBouncer (Debian's pgbouncer package) in front of
// the bench database in transaction pooling mode and returns its address.
// It skips the benchmark when PgBouncer is not installed. PgBouncer does
// not run as root, so as root it runs as the postgres user.
func startPgbouncer(b *testing.B, pgPort int, password string) string {
	b.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if _, statErr := os.Stat("/usr/sbin/pgbouncer"); statErr != nil {
			b.Skip("pgbouncer is not installed (apt-get install pgbouncer)")
		}
		bin = "/usr/sbin/pgbouncer"
	}

	dir, err := os.MkdirTemp("", "pgbouncer-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	files := map[string]string{
		"users.txt": fmt.Sprintf("%q %q\n", upstreamRole, password),
		"pgbouncer.ini": fmt.Sprintf(`[databases]
bench = host=127.0.0.1 port=%d dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s
pool_mode = transaction
max_client_conn = 64
default_pool_size = 16
logfile = %s
`, pgPort, port, filepath.Join(dir, "users.txt"), filepath.Join(dir, "pgbouncer.log")),
	}
	// pgbouncer refuses to run as root. It runs as postgres directly rather
	// than under runuser, so that killing it at cleanup leaves no orphan.
	var cred *syscall.Credential
	owner := -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			b.Skip("running as root and no postgres user to run pgbouncer as")
		}
		owner, _ = strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(owner), Gid: uint32(gid)}
		if err := os.Chown(dir, owner, -1); err != nil {
			b.Fatal(err)
		}
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			b.Fatal(err)
		}
		if owner >= 0 {
			if err := os.Chown(path, owner, -1); err != nil {
				b.Fatal(err)
			}
		}
	}

	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			b.Fatalf("pgbouncer did not listen on %s: %v\n%s", addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
