package server

import (
	"context"
	"net/http"
	"testing"
	"time"

	"ward.dev/ward/crypto/keyset"
	"ward.dev/ward/internal/config"
)

func TestKeysetRotatesAtEncryptionLimit(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.KEK.Rotation.MaxEncryptions = 1 })
	// Creating the data directory sealed keys with the keyset, so the
	// primary key is past its limit of one encryption.
	before := ts.srv.keyset.Status()

	ctx, cancel := context.WithCancel(context.Background())
	tick := make(chan time.Time)
	done := make(chan struct{})
	go func() { ts.srv.rotateKeys(ctx, tick); close(done) }()
	tick <- time.Now()
	cancel()
	<-done

	after := ts.srv.keyset.Status()
	if len(after.Keys) != len(before.Keys)+1 || primaryID(after) == primaryID(before) {
		t.Errorf("keyset after the tick: primary %d with %d keys, want a new primary beside the %d old keys", primaryID(after), len(after.Keys), len(before.Keys))
	}
	// Data sealed before the rotation still opens, and the server still issues.
	if code := ts.call(t, "POST", "/v1/issue/jwt", map[string]any{"audience": []string{"a"}}, nil); code != http.StatusOK {
		t.Errorf("issue after rotation = %d, want 200", code)
	}
}

func primaryID(st keyset.Status) uint32 {
	for _, k := range st.Keys {
		if k.Primary {
			return k.ID
		}
	}
	return 0
}
