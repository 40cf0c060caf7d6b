package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"ward.dev/ward/internal/config"
)

// unsealRetry is how often a sealed server tries to reach its key provider.
const unsealRetry = 2 * time.Second

// Run opens the server and serves on ln until ctx ends. When the key
// provider is unreachable at start (an HSM token missing, Vault down), it
// serves sealed instead: /v1/health returns {"status":"sealed"} and every
// other call 503 naming the provider, over an ephemeral self-signed
// certificate because the CA cannot sign while sealed. It retries and
// switches to the real server once the provider is back. ready is called
// with the server once it is unsealed.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, ln net.Listener, ready func(*Server)) error {
	srv, err := Open(cfg, log)
	if err == nil {
		defer srv.Close()
		ready(srv)
		return srv.Serve(ctx, ln)
	}
	if !errors.Is(err, ErrSealed) {
		return err
	}

	log.Error("ward starts sealed: the key provider is unreachable; retrying", "error", err, "retry_every", unsealRetry)
	tcp, ok := ln.(*net.TCPListener)
	if !ok {
		return err
	}
	sealedLn := &handoffListener{TCPListener: tcp}
	sealedCtx, stopSealed := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- serveSealed(sealedCtx, sealedLn, providerName(cfg)+" unreachable") }()

	ticker := time.NewTicker(unsealRetry)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			stopSealed()
			return <-done
		case <-ticker.C:
		}
		srv, err := Open(cfg, log)
		if errors.Is(err, ErrSealed) {
			continue
		}
		stopSealed()
		if serr := <-done; serr != nil {
			log.Warn("sealed listener stopped with an error", "error", serr)
		}
		if rerr := sealedLn.release(); rerr != nil {
			return rerr
		}
		if err != nil {
			return err
		}
		log.Info("ward unsealed: the key provider is reachable")
		defer srv.Close()
		ready(srv)
		return srv.Serve(ctx, ln)
	}
}

// handoffListener lets the sealed server stop accepting without closing the
// listening socket, which the unsealed server then takes over. Close wakes a
// pending Accept with a past deadline instead of closing the socket.
type handoffListener struct {
	*net.TCPListener
	stopped atomic.Bool
}

func (l *handoffListener) Accept() (net.Conn, error) {
	c, err := l.TCPListener.Accept()
	if err != nil && l.stopped.Load() {
		return nil, net.ErrClosed
	}
	return c, err
}

func (l *handoffListener) Close() error {
	l.stopped.Store(true)
	return l.TCPListener.SetDeadline(time.Now())
}

// release makes the socket usable again after the sealed server stopped.
func (l *handoffListener) release() error {
	return l.TCPListener.SetDeadline(time.Time{})
}

func serveSealed(ctx context.Context, ln *handoffListener, reason string) error {
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	msg := "sealed: " + reason
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "5")
			if r.URL.Path == "/v1/health" {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "sealed"})
				return
			}
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": msg})
		}),
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
	err = srv.Shutdown(shutdownCtx)
	<-errc
	return err
}

// selfSigned makes a throwaway certificate for the sealed listener.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: "ward (sealed)"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
