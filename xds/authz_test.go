package xds

import (
	"context"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"ward.dev/ward/authz"
)

// TestGRPCPeersRealEnforcer runs the gRPC mesh against ward's Casbin
// enforcer: connect rules in a policy file, a reload that grants a call,
// and the enforcer's quarantine overlay.
func TestGRPCPeersRealEnforcer(t *testing.T) {
	dir := t.TempDir()
	modelPath, policyPath, err := authz.WriteDefaults(dir, testTD, "spiffe://"+testTD+"/admin", "test")
	if err != nil {
		t.Fatal(err)
	}
	appendPolicy(t, policyPath, "p, "+testID("a")+", test, service/"+testID("b")+", connect, allow\n")
	enf, err := authz.New(modelPath, policyPath)
	if err != nil {
		t.Fatal(err)
	}
	az := AuthorizerFunc(func(sub, dom, obj, act string) bool { return enf.Decide(sub, dom, obj, act).Allowed })

	m := startGRPCMeshWith(t, az, "a", "b", "c")
	versions, stop := enf.Subscribe()
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.ward.FollowPolicy(ctx, versions)

	ab := m.client(t, "a", "b")
	cb := m.client(t, "c", "b")
	waitCode(t, ab, codes.OK, 10*time.Second)
	waitCode(t, cb, codes.PermissionDenied, 10*time.Second)

	appendPolicy(t, policyPath, "p, "+testID("c")+", test, service/"+testID("b")+", connect, allow\n")
	if err := enf.Reload(); err != nil {
		t.Fatalf("Reload() = %v", err)
	}
	waitCode(t, cb, codes.OK, 5*time.Second)

	// An explicit deny wins over the allow line.
	appendPolicy(t, policyPath, "p, "+testID("c")+", test, service/"+testID("b")+", connect, deny\n")
	if err := enf.Reload(); err != nil {
		t.Fatalf("Reload() = %v", err)
	}
	waitCode(t, cb, codes.PermissionDenied, 5*time.Second)

	// The enforcer's quarantine overlay reaches the mesh through Subscribe.
	enf.Quarantine(testID("b"), "test")
	waitCode(t, ab, codes.PermissionDenied, time.Second)
	enf.Release(testID("b"))
	waitCode(t, ab, codes.OK, 5*time.Second)
}

func appendPolicy(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		t.Fatal(err)
	}
}

// newBenchEnforcer returns ward's enforcer over the default model and the
// given policy lines.
func newBenchEnforcer(b *testing.B, lines string) *authz.Enforcer {
	b.Helper()
	dir := b.TempDir()
	modelPath, policyPath, err := authz.WriteDefaults(dir, testTD, "spiffe://"+testTD+"/admin", "bench")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(policyPath, []byte(lines), 0o600); err != nil {
		b.Fatal(err)
	}
	enf, err := authz.New(modelPath, policyPath)
	if err != nil {
		b.Fatal(err)
	}
	return enf
}
