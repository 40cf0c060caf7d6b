package static

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

func tool(opts DBOptions, name string) string {
	if opts.BinDir == "" {
		return name
	}
	return filepath.Join(opts.BinDir, name)
}

// toolArgs returns the connection string for pg_dump or psql without its
// password, and the environment that passes the password instead, because
// other local users can read a process's arguments but not its environment.
func toolArgs(dsn string) (string, []string) {
	env := os.Environ()
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if pw, ok := u.User.Password(); ok {
			u.User = url.User(u.User.Username())
			return u.String(), append(env, "PGPASSWORD="+pw)
		}
		return dsn, env
	}
	if m := passwordRe.FindStringSubmatchIndex(dsn); m != nil {
		pw := strings.Trim(dsn[m[2]:m[3]], "'")
		return dsn[:m[0]] + dsn[m[1]:], append(env, "PGPASSWORD="+pw)
	}
	return dsn, env
}

// passwordRe finds password=... in a key=value connection string.
var passwordRe = regexp.MustCompile(`(?:^|\s)password\s*=\s*('[^']*'|\S+)`)

// runDump runs pg_dump --schema-only on the source with extra flags.
func runDump(ctx context.Context, opts DBOptions, flags ...string) ([]byte, error) {
	dsn, env := toolArgs(opts.Source)
	args := append([]string{"--schema-only", "--no-owner", "--no-privileges", "--dbname", dsn}, flags...)
	cmd := exec.CommandContext(ctx, tool(opts, "pg_dump"), args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("pg_dump %s: %w: %s", strings.Join(flags, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// pendingDump is a pg_dump run in progress.
type pendingDump struct {
	done chan struct{}
	out  []byte
	err  error
}

// startDump starts runDump in a goroutine. Canceling ctx stops pg_dump, so
// a dump the caller no longer waits for ends with the copy.
func startDump(ctx context.Context, opts DBOptions, flags ...string) *pendingDump {
	d := &pendingDump{done: make(chan struct{})}
	go func() {
		defer close(d.done)
		d.out, d.err = runDump(ctx, opts, flags...)
	}()
	return d
}

// wait returns the dump's output once pg_dump has exited.
func (d *pendingDump) wait() ([]byte, error) {
	<-d.done
	return d.out, d.err
}

// runPSQL runs script on the target in one transaction, stopping at the
// first error.
func runPSQL(ctx context.Context, opts DBOptions, script []byte) error {
	dsn, env := toolArgs(opts.Target)
	cmd := exec.CommandContext(ctx, tool(opts, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "--dbname", dsn, "-f", "-")
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("psql: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// dropStatements keeps the DROP statements of a pg_dump --clean script
// (and the psql settings before them), so running it removes what the
// matching pre-data script created. Extensions are left alone: pre-data
// creates them with IF NOT EXISTS, so the target may have had them before.
func dropStatements(script []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.Split(string(script), "\n") {
		if strings.HasPrefix(line, "DROP EXTENSION ") {
			continue
		}
		if strings.HasPrefix(line, "DROP ") || strings.HasPrefix(line, "ALTER TABLE IF EXISTS ") || strings.HasPrefix(line, "SET ") ||
			strings.HasPrefix(line, `\restrict`) || strings.HasPrefix(line, `\unrestrict`) || strings.HasPrefix(line, "SELECT pg_catalog.set_config") {
			out.WriteString(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}
