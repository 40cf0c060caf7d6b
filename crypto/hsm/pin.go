package hsm

import (
	"fmt"
	"io"
	"os"

	"ward.dev/ward/crypto/secret"
)

// maxPINSize bounds a PIN read from a file or the environment. PKCS#11
// tokens accept far shorter PINs, and SoftHSM2 at most 255 bytes.
const maxPINSize = 255

// PINFromFile reads a PIN from the first line of a file. The file must be
// readable by its owner only (mode 0600 or 0400), because a PIN readable by
// others unlocks every key on the token. A trailing newline is not part of
// the PIN.
func PINFromFile(path string) (secret.Bytes, error) {
	f, err := os.Open(path)
	if err != nil {
		return secret.Bytes{}, fmt.Errorf("hsm: PIN file: %w", err)
	}
	defer f.Close()

	info, err := f.Stat()
	if err != nil {
		return secret.Bytes{}, fmt.Errorf("hsm: PIN file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return secret.Bytes{}, fmt.Errorf("hsm: PIN file %s is not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return secret.Bytes{}, fmt.Errorf("hsm: PIN file %s has mode %04o, which lets group or others read the PIN; run chmod 600 %s", path, perm, path)
	}

	buf, err := io.ReadAll(io.LimitReader(f, maxPINSize+2))
	if err != nil {
		return secret.Bytes{}, fmt.Errorf("hsm: reading PIN file %s: %w", path, err)
	}
	defer clear(buf)
	return parsePIN(buf, "PIN file "+path)
}

// PINFromEnv reads a PIN from the environment variable name.
func PINFromEnv(name string) (secret.Bytes, error) {
	value, ok := os.LookupEnv(name)
	if !ok {
		return secret.Bytes{}, fmt.Errorf("hsm: PIN variable %s is not set", name)
	}
	return parsePIN([]byte(value), "PIN variable "+name)
}

// parsePIN strips one trailing line break and checks the length. source
// names where the PIN came from. Errors never contain the PIN.
func parsePIN(b []byte, source string) (secret.Bytes, error) {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	switch {
	case len(b) == 0:
		return secret.Bytes{}, fmt.Errorf("hsm: %s is empty", source)
	case len(b) > maxPINSize:
		return secret.Bytes{}, fmt.Errorf("hsm: %s is longer than %d bytes", source, maxPINSize)
	}
	for _, c := range b {
		if c == '\n' || c == 0 {
			return secret.Bytes{}, fmt.Errorf("hsm: %s contains a line break or NUL byte inside the PIN", source)
		}
	}
	return secret.New(b), nil
}
