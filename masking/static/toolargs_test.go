package static

import (
	"slices"
	"strings"
	"testing"
)

func TestToolArgsHidePassword(t *testing.T) {
	tests := []struct {
		name, dsn, wantDSN, wantPW string
	}{
		{"url", "postgres://app:s3cret@127.0.0.1:5432/db?sslmode=disable", "postgres://app@127.0.0.1:5432/db?sslmode=disable", "s3cret"},
		{"url without password", "postgres://app@127.0.0.1/db", "postgres://app@127.0.0.1/db", ""},
		{"key value", "host=127.0.0.1 password=s3cret dbname=db", "host=127.0.0.1 dbname=db", "s3cret"},
		{"key value quoted", "password='a b' host=h", " host=h", "a b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dsn, env := toolArgs(tc.dsn)
			if dsn != tc.wantDSN {
				t.Errorf("toolArgs(%q) dsn = %q, want %q", tc.dsn, dsn, tc.wantDSN)
			}
			if strings.Contains(dsn, "s3cret") {
				t.Errorf("dsn %q still has the password", dsn)
			}
			has := slices.Contains(env, "PGPASSWORD="+tc.wantPW)
			if tc.wantPW != "" && !has {
				t.Errorf("environment lacks PGPASSWORD=%s", tc.wantPW)
			}
		})
	}
}
