package agent_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"ward.dev/ward/test/wardtest"
)

const ordersID = "spiffe://ward.test/ns/shop/sa/orders"

// startWorkloadAgent starts an agent for id that serves the Workload API
// and returns the socket path.
func startWorkloadAgent(t *testing.T, srv *wardtest.Server, id, ttl string) string {
	t.Helper()
	// Unix socket paths are limited to about 100 bytes, so the socket goes
	// into a short directory of its own.
	sockDir, err := os.MkdirTemp("", "wa")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "agent.sock")
	dir := t.TempDir()
	startAgent(t, dir, fmt.Sprintf(`
broker: {addr: %s, ca_file: %s}
auth: {method: join_token, join_token_file: %s}
output_dir: %s
credentials:
  - {name: svid, path: x509, ttl: %s}
workload_api: {socket: %s}
`, srv.Addr(), srv.CACertPath(), joinToken(t, srv, dir, id), dir, ttl, sock))
	waitFor(t, 10*time.Second, "the Workload API socket", func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	return sock
}

// x509Watcher records the X.509 contexts and errors a go-spiffe client
// reports on one watch.
type x509Watcher struct {
	mu      sync.Mutex
	serials []string
	errs    int
}

func (w *x509Watcher) OnX509ContextUpdate(c *workloadapi.X509Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.serials = append(w.serials, c.DefaultSVID().Certificates[0].SerialNumber.String())
}

// OnX509ContextWatchError counts errors other than the cancellation that
// ends the watch.
func (w *x509Watcher) OnX509ContextWatchError(err error) {
	if status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs++
}

func (w *x509Watcher) snapshot() ([]string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.serials...), w.errs
}

// TestWorkloadAPIStreamsRenewal connects a go-spiffe client to the agent's
// socket: it gets an X.509-SVID and bundle, then the renewed SVID on the
// same stream, and JWT-SVIDs that the agent validates.
func TestWorkloadAPIStreamsRenewal(t *testing.T) {
	t.Parallel()
	srv := wardtest.StartDev(t)
	sock := startWorkloadAgent(t, srv, webID, "20s")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+sock))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	x509ctx, err := client.FetchX509Context(ctx)
	if err != nil {
		t.Fatalf("FetchX509Context = %v", err)
	}
	if got := x509ctx.DefaultSVID().ID.String(); got != webID {
		t.Errorf("SVID ID = %s, want %s", got, webID)
	}
	td := spiffeid.RequireTrustDomainFromString("ward.test")
	if b, ok := x509ctx.Bundles.Get(td); !ok || len(b.X509Authorities()) == 0 {
		t.Errorf("bundle for %s missing from the X.509 context", td)
	}

	w := &x509Watcher{}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		_ = client.WatchX509Context(watchCtx, w)
	}()
	waitFor(t, 30*time.Second, "a renewed SVID on the watch", func() bool {
		serials, _ := w.snapshot()
		return len(serials) >= 2
	})
	stopWatch()
	<-watchDone
	serials, errs := w.snapshot()
	if serials[0] == serials[1] {
		t.Errorf("watch updates carry the same serial %s, want a renewed SVID", serials[0])
	}
	if errs != 0 {
		t.Errorf("watch reported %d errors, want 0 (no reconnection)", errs)
	}

	token, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "orders.shop"})
	if err != nil {
		t.Fatalf("FetchJWTSVID = %v", err)
	}
	if token.ID.String() != webID {
		t.Errorf("JWT-SVID ID = %s, want %s", token.ID, webID)
	}
	if _, err := client.ValidateJWTSVID(ctx, token.Marshal(), "orders.shop"); err != nil {
		t.Errorf("ValidateJWTSVID(right audience) = %v, want nil", err)
	}
	if _, err := client.ValidateJWTSVID(ctx, token.Marshal(), "other"); err == nil {
		t.Error("ValidateJWTSVID(wrong audience) = nil, want an error")
	}
	bundles, err := client.FetchJWTBundles(ctx)
	if err != nil {
		t.Fatalf("FetchJWTBundles = %v", err)
	}
	if b, ok := bundles.Get(td); !ok || len(b.JWTAuthorities()) == 0 {
		t.Error("JWT bundle for ward.test missing")
	}
}

// TestWorkloadAPIHeaderRequired calls the socket without the security
// header, which the Workload API specification requires.
func TestWorkloadAPIHeaderRequired(t *testing.T) {
	t.Parallel()
	srv := wardtest.StartDev(t)
	sock := startWorkloadAgent(t, srv, webID, "1m")

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("FetchX509SVID without header = %v, want InvalidArgument", err)
	}
}

// TestWorkloadAPIMutualTLS runs a server and a client that take their
// certificates from two agents and authorize each other's SPIFFE ID.
func TestWorkloadAPIMutualTLS(t *testing.T) {
	t.Parallel()
	srv := wardtest.StartDev(t)
	serverSock := startWorkloadAgent(t, srv, ordersID, "1m")
	clientSock := startWorkloadAgent(t, srv, webID, "1m")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	serverSource, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+serverSock)))
	if err != nil {
		t.Fatalf("NewX509Source(server) = %v", err)
	}
	defer serverSource.Close()
	clientSource, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+clientSock)))
	if err != nil {
		t.Fatalf("NewX509Source(client) = %v", err)
	}
	defer clientSource.Close()

	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsconfig.MTLSServerConfig(serverSource, serverSource, tlsconfig.AuthorizeID(spiffeid.RequireFromString(webID))))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 4)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			tc := conn.(*tls.Conn)
			if err := tc.HandshakeContext(ctx); err != nil {
				peer <- err.Error()
				conn.Close()
				continue
			}
			peer <- tc.ConnectionState().PeerCertificates[0].URIs[0].String()
			_, _ = io.WriteString(conn, "ok")
			conn.Close()
		}
	}()

	conn, err := tls.Dial("tcp", ln.Addr().String(), tlsconfig.MTLSClientConfig(clientSource, clientSource, tlsconfig.AuthorizeID(spiffeid.RequireFromString(ordersID))))
	if err != nil {
		t.Fatalf("mTLS dial = %v", err)
	}
	defer conn.Close()
	reply, err := io.ReadAll(conn)
	if err != nil || string(reply) != "ok" {
		t.Errorf("mTLS read = %q, %v, want \"ok\"", reply, err)
	}
	if got := <-peer; got != webID {
		t.Errorf("server saw peer %s, want %s", got, webID)
	}

	// A client that authorizes another ID must fail the handshake.
	_, err = tls.Dial("tcp", ln.Addr().String(), tlsconfig.MTLSClientConfig(clientSource, clientSource, tlsconfig.AuthorizeID(spiffeid.RequireFromString(webID))))
	if err == nil {
		t.Error("dial authorizing the wrong server ID = nil error, want a handshake failure")
	}
}

// TestWorkloadAPINoSVIDConfigured checks that FetchX509SVID fails at once
// with PermissionDenied when the agent has no x509 credential, instead of
// leaving the client waiting.
func TestWorkloadAPINoSVIDConfigured(t *testing.T) {
	t.Parallel()
	srv := wardtest.StartDev(t)
	sockDir, err := os.MkdirTemp("", "wa")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "agent.sock")
	dir := t.TempDir()
	startAgent(t, dir, fmt.Sprintf(`
broker: {addr: %s, ca_file: %s}
auth: {method: join_token, join_token_file: %s}
output_dir: %s
credentials:
  - {name: tok, path: jwt, audience: [a]}
workload_api: {socket: %s}
`, srv.Addr(), srv.CACertPath(), joinToken(t, srv, dir, webID), dir, sock))
	waitFor(t, 10*time.Second, "the Workload API socket", func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+sock))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.FetchX509SVID(ctx); status.Code(err) != codes.PermissionDenied {
		t.Errorf("FetchX509SVID = %v, want PermissionDenied", err)
	}
}
