// Package client calls the ward API for the command-line tools. It reads
// the connection settings from the environment in the manner of Vault's
// client: WARD_ADDR, WARD_TOKEN, WARD_CACERT, WARD_CLIENT_CERT and
// WARD_CLIENT_KEY. Only TLS 1.3 is offered, and the server must present a
// certificate that WARD_CACERT (or the system pool) trusts.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// DefaultAddr is the API address when WARD_ADDR is unset.
const DefaultAddr = "https://127.0.0.1:8443"

// maxResponse bounds a response body read into memory.
const maxResponse = 16 << 20

// Client is safe for concurrent use.
type Client struct {
	addr  string
	token string
	http  *http.Client
}

// Settings are the connection settings.
type Settings struct {
	Addr, Token, CACert, ClientCert, ClientKey string
}

// FromEnv reads the settings from the WARD_* environment variables.
func FromEnv() Settings {
	return Settings{
		Addr:       os.Getenv("WARD_ADDR"),
		Token:      os.Getenv("WARD_TOKEN"),
		CACert:     os.Getenv("WARD_CACERT"),
		ClientCert: os.Getenv("WARD_CLIENT_CERT"),
		ClientKey:  os.Getenv("WARD_CLIENT_KEY"),
	}
}

// New returns a client for the settings.
func New(s Settings) (*Client, error) {
	addr := strings.TrimRight(s.Addr, "/")
	if addr == "" {
		addr = DefaultAddr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("invalid WARD_ADDR %q: want https://host:port", addr)
	}

	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if s.CACert != "" {
		pemBytes, err := os.ReadFile(s.CACert)
		if err != nil {
			return nil, fmt.Errorf("read WARD_CACERT: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("WARD_CACERT %s contains no PEM certificate", s.CACert)
		}
		tlsCfg.RootCAs = pool
	}
	switch {
	case s.ClientCert != "" && s.ClientKey != "":
		cert, err := tls.LoadX509KeyPair(s.ClientCert, s.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("load WARD_CLIENT_CERT and WARD_CLIENT_KEY: %w", err)
		}
		tlsCfg.Certificates = []tls.Certificate{cert}
	case s.ClientCert != "" || s.ClientKey != "":
		return nil, errors.New("set both WARD_CLIENT_CERT and WARD_CLIENT_KEY, or neither")
	}

	transport := &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64}
	return &Client{
		addr:  addr,
		token: s.Token,
		http:  &http.Client{Transport: transport, Timeout: 60 * time.Second},
	}, nil
}

// Error is a failed API call: the status and the server's message.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// Do sends a request with an optional JSON body and decodes a JSON response
// into out (when non-nil). A non-2xx status returns *Error.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	raw, err := c.Raw(ctx, method, path, in)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode response of %s %s: %w", method, path, err)
	}
	return nil
}

// Raw sends a request and returns the response body of a 2xx response.
func (c *Client) Raw(ctx context.Context, method, path string, in any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.addr+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("read response of %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return nil, &Error{Status: resp.StatusCode, Message: msg}
	}
	return raw, nil
}
