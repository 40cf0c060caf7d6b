package pgcred

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"ward.dev/ward/crypto/secret"
)

// maxIdentifier is PostgreSQL's NAMEDATALEN-1, the longest role name.
const maxIdentifier = 63

// usernameRandomBytes of randomness make the 16-character suffix of a
// generated username.
const usernameRandomBytes = 10

// passwordBytes of randomness make a 43-character password.
const passwordBytes = 32

// scramIterations matches PostgreSQL's default scram_iterations.
const scramIterations = 4096

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// usernameSuffixLen is the length of the random part of a username.
var usernameSuffixLen = lowerBase32.EncodedLen(usernameRandomBytes)

// newUsername returns usernamePrefix(roleName) followed by 16 random
// characters of [a-z2-7], at most 63 bytes in all.
func newUsername(rand io.Reader, roleName string) (string, error) {
	b := make([]byte, usernameRandomBytes)
	if _, err := io.ReadFull(rand, b); err != nil {
		return "", fmt.Errorf("generating username: %w", err)
	}
	return usernamePrefix(roleName) + lowerBase32.EncodeToString(b), nil
}

// usernamePrefix returns "ward_<role>_", with the role part reduced to
// [a-z0-9_] and shortened so that the username fits in 63 bytes.
func usernamePrefix(roleName string) string {
	part := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(roleName))
	room := maxIdentifier - len("ward_") - len("_") - usernameSuffixLen
	if len(part) > room {
		part = part[:room]
	}
	return "ward_" + part + "_"
}

// newPassword returns 32 random bytes in unpadded base64url.
func newPassword(rand io.Reader) (secret.Bytes, error) {
	raw, err := secret.Random(rand, passwordBytes)
	if err != nil {
		return secret.Bytes{}, fmt.Errorf("generating password: %w", err)
	}
	b := raw.Reveal()
	defer clear(b)
	enc := make([]byte, base64.RawURLEncoding.EncodedLen(len(b)))
	defer clear(enc)
	base64.RawURLEncoding.Encode(enc, b)
	return secret.New(enc), nil
}

// scramVerifier returns the SCRAM-SHA-256 verifier that PostgreSQL stores
// in pg_authid.rolpassword (RFC 5802 and RFC 7677):
//
//	SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>
//
// PostgreSQL accepts it in place of a plaintext password in CREATE ROLE and
// ALTER ROLE. The password must already be valid SASLprep output, which a
// base64url password is.
func scramVerifier(rand io.Reader, password []byte) (string, error) {
	salt := make([]byte, 16)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return "", fmt.Errorf("generating SCRAM salt: %w", err)
	}
	salted, err := pbkdf2.Key(sha256.New, string(password), salt, scramIterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("deriving SCRAM key: %w", err)
	}
	defer clear(salted)

	clientKey := hmacSHA256(salted, "Client Key")
	defer clear(clientKey)
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")

	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s",
		scramIterations, enc(salt), enc(storedKey[:]), enc(serverKey)), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// quoteIdentifier returns name as a double-quoted SQL identifier.
func quoteIdentifier(name string) string {
	return pgx.Identifier{name}.Sanitize()
}

// quoteLiteral returns s as a SQL string literal that reads the same
// whatever standard_conforming_strings is set to, as libpq's
// PQescapeLiteral does: quotes and backslashes are doubled, and a literal
// with a backslash gets the E prefix. NUL bytes, which PostgreSQL rejects
// in text, are dropped, as pgx.Identifier.Sanitize drops them.
func quoteLiteral(s string) string {
	s = strings.ReplaceAll(s, "\x00", "")
	escaped := strings.ReplaceAll(s, `'`, `''`)
	if !strings.Contains(s, `\`) {
		return "'" + escaped + "'"
	}
	return " E'" + strings.ReplaceAll(escaped, `\`, `\\`) + "'"
}

// formatExpiry returns t as a timestamptz literal in UTC with microseconds,
// PostgreSQL's timestamp precision.
func formatExpiry(t time.Time) string {
	return quoteLiteral(t.UTC().Format("2006-01-02 15:04:05.000000Z07:00"))
}
