package inject

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

// maxReview bounds an AdmissionReview body. The API server limits objects
// to about 3 MiB; a pod is far smaller.
const maxReview = 4 << 20

// Handler serves POST /mutate with AdmissionReview v1 and GET /healthz.
func (in *Injector) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /mutate", in.serveMutate)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	return mux
}

func (in *Injector) serveMutate(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		http.Error(w, fmt.Sprintf("content type %q not supported, send application/json", ct), http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReview+1))
	if err != nil {
		http.Error(w, "read body failed", http.StatusBadRequest)
		return
	}
	if len(body) > maxReview {
		http.Error(w, fmt.Sprintf("AdmissionReview larger than %d bytes", maxReview), http.StatusRequestEntityTooLarge)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		in.log.Warn("invalid AdmissionReview", "error", err)
		http.Error(w, "invalid AdmissionReview JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" {
		http.Error(w, fmt.Sprintf("unsupported %s %s, want admission.k8s.io/v1 AdmissionReview", review.APIVersion, review.Kind), http.StatusBadRequest)
		return
	}
	out, err := json.Marshal(in.Review(&review))
	if err != nil {
		in.log.Error("encode AdmissionReview response failed", "error", err)
		http.Error(w, "encode response failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// certReloader serves the certificate in certFile and keyFile, read again
// when either file's modification time changes (as when cert-manager or a
// mounted Secret rotates it). It is safe for concurrent use.
type certReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
}

func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	mod := latestModTime(c.certFile, c.keyFile)
	if c.cert != nil && !mod.After(c.modTime) {
		return c.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		if c.cert != nil {
			return c.cert, nil // keep the last good one while a rotation is half written
		}
		return nil, err
	}
	c.cert, c.modTime = &cert, mod
	return c.cert, nil
}

func latestModTime(paths ...string) time.Time {
	var latest time.Time
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(latest) {
			latest = fi.ModTime()
		}
	}
	return latest
}

// Serve runs the webhook over TLS 1.3 on ln with the certificate in
// certFile and keyFile until ctx ends.
func (in *Injector) Serve(ctx context.Context, ln net.Listener, certFile, keyFile string) error {
	reloader := &certReloader{certFile: certFile, keyFile: keyFile}
	if _, err := reloader.get(nil); err != nil {
		return fmt.Errorf("load webhook certificate: %w", err)
	}
	srv := &http.Server{
		Handler:           in.Handler(),
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: reloader.get},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
