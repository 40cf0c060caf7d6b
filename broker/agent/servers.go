package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
)

// socketMode is the mode of the Workload API and SDS sockets: the owner
// and group (the workload's) may connect.
const socketMode = 0o660

// startServers starts the listeners the configuration enables. Errors of a
// running server are sent on errc; a listener that cannot open is returned.
func (a *Agent) startServers(ctx context.Context, errc chan<- error) error {
	if a.cfg.Health.Listen != "" {
		ln, err := net.Listen("tcp", a.cfg.Health.Listen)
		if err != nil {
			return fmt.Errorf("health.listen: %w", err)
		}
		srv := &http.Server{Handler: a.HealthHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("health server: %w", err)
			}
		}()
		go func() {
			<-ctx.Done()
			_ = srv.Close()
		}()
		a.log.Info("health endpoints listening", "addr", ln.Addr().String())
	}
	if a.cfg.WorkloadAPI.Socket != "" {
		if err := a.serveGRPC(ctx, "workload_api.socket", a.cfg.WorkloadAPI.Socket, newWorkloadGRPC(a), errc); err != nil {
			return err
		}
	}
	if a.cfg.SDS.Socket != "" {
		srv, err := newSDSGRPC(ctx, a)
		if err != nil {
			return err
		}
		if err := a.serveGRPC(ctx, "sds.socket", a.cfg.SDS.Socket, srv, errc); err != nil {
			return err
		}
	}
	if a.child != nil {
		go func() {
			select {
			case err := <-a.child.exited():
				errc <- err
			case <-ctx.Done():
			}
		}()
	}
	return nil
}

// serveGRPC listens on a Unix socket, replacing a stale socket file left by
// an earlier run, and stops the server when ctx ends.
func (a *Agent) serveGRPC(ctx context.Context, key, path string, srv *grpc.Server, errc chan<- error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("%s: %s exists and is not a socket", key, path)
		}
		_ = os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if err := os.Chmod(path, socketMode); err != nil {
		ln.Close()
		return fmt.Errorf("%s: %w", key, err)
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("%s: %w", key, err)
		}
	}()
	go func() {
		<-ctx.Done()
		srv.Stop()
		_ = os.Remove(path)
	}()
	a.log.Info("socket listening", "service", key, "path", path)
	return nil
}

// HealthHandler serves GET /healthz (the process runs: always 200) and GET
// /readyz (200 when Ready returns nil, else 503 with the reason).
func (a *Agent) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.Ready(); err != nil {
			writeStatus(w, http.StatusServiceUnavailable, map[string]string{"status": "unready", "reason": err.Error()})
			return
		}
		writeStatus(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	return mux
}

func writeStatus(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
