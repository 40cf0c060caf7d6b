package keyset_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"ward.dev/ward/crypto/kek"
	"ward.dev/ward/crypto/keyset"
)

// fakeClock is a settable clock for rotation tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func keyIDOf(ciphertext []byte) uint32 { return binary.BigEndian.Uint32(ciphertext[1:5]) }

func TestRotateKeepsOldCiphertexts(t *testing.T) {
	k := newLocalKEK(t)
	ks, path := createKeyset(t, k)
	before, err := ks.Encrypt([]byte("before"), nil)
	if err != nil {
		t.Fatal(err)
	}

	newID, err := ks.Rotate()
	if err != nil {
		t.Fatalf("Rotate error: %v", err)
	}
	after, err := ks.Encrypt([]byte("after"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := keyIDOf(after); got != newID {
		t.Errorf("Encrypt after Rotate used key %d, want new key %d", got, newID)
	}
	if keyIDOf(before) == newID {
		t.Errorf("Rotate returned the old key id %d", newID)
	}

	reopened, err := keyset.Open(path, k)
	if err != nil {
		t.Fatalf("Open after Rotate error: %v", err)
	}
	for name, ct := range map[string][]byte{"before": before, "after": after} {
		pt, err := reopened.Decrypt(ct, nil)
		if err != nil || string(pt) != name {
			t.Errorf("Decrypt(%s) = %q, %v, want %q", name, pt, err, name)
		}
	}

	st := reopened.Status()
	if len(st.Keys) != 2 {
		t.Fatalf("Status().Keys has %d keys, want 2", len(st.Keys))
	}
	for _, key := range st.Keys {
		if key.Primary != (key.ID == newID) {
			t.Errorf("Status key %d Primary = %v, want %v", key.ID, key.Primary, key.ID == newID)
		}
		if key.Status != "Enabled" {
			t.Errorf("Status key %d Status = %q, want Enabled", key.ID, key.Status)
		}
		if key.Estimated {
			t.Errorf("Status key %d Estimated = true, want false", key.ID)
		}
	}
}

func TestRewrapChangesKEK(t *testing.T) {
	oldKEK := newLocalKEK(t)
	newKEK := newLocalKEK(t)
	ks, path := createKeyset(t, oldKEK)
	ct, err := ks.Encrypt([]byte("data"), nil)
	if err != nil {
		t.Fatal(err)
	}

	if err := ks.Rewrap(newKEK); err != nil {
		t.Fatalf("Rewrap error: %v", err)
	}
	if _, err := keyset.Open(path, oldKEK); !errors.Is(err, kek.ErrSealed) {
		t.Errorf("Open with the old KEK after Rewrap error = %v, want kek.ErrSealed", err)
	}
	reopened, err := keyset.Open(path, newKEK)
	if err != nil {
		t.Fatalf("Open with the new KEK after Rewrap error: %v", err)
	}
	if pt, err := reopened.Decrypt(ct, nil); err != nil || string(pt) != "data" {
		t.Errorf("Decrypt after Rewrap = %q, %v, want %q", pt, err, "data")
	}
	if got := reopened.Status().KEK; got != newKEK.String() {
		t.Errorf("Status().KEK = %q, want %q", got, newKEK.String())
	}
}

func TestRotationDueByAge(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "keyset.bin")
	ks, err := keyset.Create(path, newLocalKEK(t), keyset.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	policy := keyset.Policy{MaxAge: 30 * 24 * time.Hour}

	clock.Advance(29 * 24 * time.Hour)
	if rotated, err := ks.RotateIfDue(policy); err != nil || rotated {
		t.Fatalf("RotateIfDue at 29 days = %v, %v, want false, nil", rotated, err)
	}

	clock.Advance(24 * time.Hour)
	due, reason := ks.RotationDue(policy)
	if !due || reason == "" {
		t.Fatalf("RotationDue at 30 days = %v, %q, want true with a reason", due, reason)
	}
	rotated, err := ks.RotateIfDue(policy)
	if err != nil || !rotated {
		t.Fatalf("RotateIfDue at 30 days = %v, %v, want true, nil", rotated, err)
	}
	if due, _ := ks.RotationDue(policy); due {
		t.Errorf("RotationDue right after rotation = true, want false")
	}

	st := ks.Status()
	if len(st.Keys) != 2 {
		t.Fatalf("Status().Keys has %d keys, want 2", len(st.Keys))
	}
	for _, key := range st.Keys {
		wantAge := 30 * 24 * time.Hour
		if key.Primary {
			wantAge = 0
		}
		if time.Duration(key.Age) != wantAge {
			t.Errorf("Status key %d (primary %v) Age = %v, want %v", key.ID, key.Primary, time.Duration(key.Age), wantAge)
		}
	}
}

func TestRotationDueByCount(t *testing.T) {
	ks, _ := createKeyset(t, newLocalKEK(t))
	// Every process claims 2^16 encryptions at a time, so the count reaches
	// 2^17 on the 2^16+1st encryption.
	policy := keyset.Policy{MaxEncryptions: 1 << 17}

	for i := range 1 << 16 {
		if _, err := ks.Encrypt(nil, nil); err != nil {
			t.Fatalf("Encrypt %d error: %v", i, err)
		}
	}
	if due, reason := ks.RotationDue(policy); due {
		t.Fatalf("RotationDue after 2^16 encryptions = true (%s), want false", reason)
	}
	if _, err := ks.Encrypt(nil, nil); err != nil {
		t.Fatal(err)
	}
	if due, _ := ks.RotationDue(policy); !due {
		t.Errorf("RotationDue after 2^16+1 encryptions = false, want true")
	}
}

// usageOf reads the recorded encryption count of the keyset's keys.
func usageOf(t *testing.T, path string) map[uint32]uint64 {
	t.Helper()
	data, err := os.ReadFile(path + ".usage.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Keys []struct {
			ID          uint32 `json:"id"`
			Encryptions uint64 `json:"encryptions"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	out := map[uint32]uint64{}
	for _, k := range f.Keys {
		out[k.ID] = k.Encryptions
	}
	return out
}

func TestUsageCountsTwoProcesses(t *testing.T) {
	k := newLocalKEK(t)
	first, path := createKeyset(t, k)
	second, err := keyset.Open(path, k)
	if err != nil {
		t.Fatal(err)
	}

	ct, err := first.Encrypt([]byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.Encrypt([]byte("y"), nil); err != nil {
		t.Fatal(err)
	}

	id := keyIDOf(ct)
	if got := usageOf(t, path)[id]; got != 2<<16 {
		t.Errorf("recorded encryptions after two processes claimed a block = %d, want %d", got, 2<<16)
	}
	info, err := os.Stat(path + ".usage.json")
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("usage file mode = %04o, want 0600", info.Mode().Perm())
	}
}

func TestRotateStaleKeyset(t *testing.T) {
	k := newLocalKEK(t)
	first, path := createKeyset(t, k)
	second, err := keyset.Open(path, k)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := first.Rotate(); err != nil {
		t.Fatalf("first Rotate error: %v", err)
	}
	if _, err := second.Rotate(); !errors.Is(err, keyset.ErrChanged) {
		t.Errorf("Rotate of a stale keyset error = %v, want keyset.ErrChanged", err)
	}
	if err := second.Rewrap(newLocalKEK(t)); !errors.Is(err, keyset.ErrChanged) {
		t.Errorf("Rewrap of a stale keyset error = %v, want keyset.ErrChanged", err)
	}
	if _, err := keyset.Open(path, k); err != nil {
		t.Errorf("Open after the rejected Rotate error: %v", err)
	}
}

func TestMissingUsageIsEstimated(t *testing.T) {
	k := newLocalKEK(t)
	_, path := createKeyset(t, k)
	if err := os.Remove(path + ".usage.json"); err != nil {
		t.Fatal(err)
	}

	ks, err := keyset.Open(path, k)
	if err != nil {
		t.Fatalf("Open without a usage file error: %v", err)
	}
	st := ks.Status()
	if len(st.Keys) != 1 || !st.Keys[0].Estimated {
		t.Errorf("Status() without a usage file = %+v, want one key marked Estimated", st.Keys)
	}
}

func TestEncryptDuringRotate(t *testing.T) {
	ks, _ := createKeyset(t, newLocalKEK(t))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ct, err := ks.Encrypt([]byte("m"), nil)
				if err == nil {
					_, err = ks.Decrypt(ct, nil)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for range 3 {
		if _, err := ks.Rotate(); err != nil {
			t.Errorf("Rotate error: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Encrypt or Decrypt during Rotate: %v", err)
	}
	if n := len(ks.Status().Keys); n != 4 {
		t.Errorf("Status().Keys after three rotations has %d keys, want 4", n)
	}
}

func TestRewrapUnreachableKEKKeepsFile(t *testing.T) {
	k := newLocalKEK(t)
	ks, path := createKeyset(t, k)
	before, _ := os.ReadFile(path)

	if err := ks.Rewrap(sealedKEK{}); !errors.Is(err, kek.ErrSealed) {
		t.Fatalf("Rewrap(unreachable KEK) error = %v, want kek.ErrSealed", err)
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Errorf("Rewrap(unreachable KEK) changed the keyset file")
	}
	if _, err := keyset.Open(path, k); err != nil {
		t.Errorf("Open with the original KEK after a failed Rewrap error: %v", err)
	}
}

func TestAutoRotate(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "keyset.bin")
	ks, err := keyset.Create(path, newLocalKEK(t), keyset.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		id  uint32
		err error
	}
	tick := make(chan time.Time)
	results := make(chan result, 1)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		ks.AutoRotate(ctx, keyset.Policy{MaxAge: time.Hour}, tick, func(id uint32, err error) { results <- result{id, err} })
		close(stopped)
	}()

	// Not due: the tick is consumed without a rotation.
	tick <- clock.Now()
	tick <- clock.Now()
	if n := len(ks.Status().Keys); n != 1 {
		t.Fatalf("keys after ticks before the limit = %d, want 1", n)
	}

	clock.Advance(time.Hour)
	tick <- clock.Now()
	r := <-results
	if r.err != nil {
		t.Fatalf("AutoRotate reported error: %v", r.err)
	}
	st := ks.Status()
	if len(st.Keys) != 2 {
		t.Fatalf("keys after a due tick = %d, want 2", len(st.Keys))
	}
	for _, k := range st.Keys {
		if k.Primary && k.ID != r.id {
			t.Errorf("primary key = %d, want reported new key %d", k.ID, r.id)
		}
	}

	cancel()
	<-stopped
}

func TestUsageKeepsOtherProcessKeys(t *testing.T) {
	k := newLocalKEK(t)
	server, path := createKeyset(t, k)
	cli, err := keyset.Open(path, k)
	if err != nil {
		t.Fatal(err)
	}

	newID, err := cli.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	// The server still encrypts with its old primary key and records usage.
	if _, err := server.Encrypt([]byte("x"), nil); err != nil {
		t.Fatal(err)
	}

	reopened, err := keyset.Open(path, k)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range reopened.Status().Keys {
		if key.ID == newID && key.Estimated {
			t.Errorf("key %d added by another process lost its usage entry", newID)
		}
	}
}
