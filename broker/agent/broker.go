package agent

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
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// maxResponse bounds a broker response read into memory.
const maxResponse = 1 << 20

// APIError is a non-2xx response of the broker.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status) }

// brokerClient calls the ward API as the agent. It presents the agent's
// current certificate, which changes on renewal, and trusts only the CA in
// broker.ca_file. It is safe for concurrent use.
type brokerClient struct {
	addr string
	http *http.Client
	tr   *http.Transport
	cert atomic.Pointer[tls.Certificate]
}

func newBrokerClient(b Broker) (*brokerClient, error) {
	pemBytes, err := os.ReadFile(b.CAFile)
	if err != nil {
		return nil, fmt.Errorf("read broker.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("broker.ca_file %s contains no PEM certificate", b.CAFile)
	}
	c := &brokerClient{addr: strings.TrimRight(b.Addr, "/")}
	c.tr = &http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS13,
			RootCAs:    pool,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if cert := c.cert.Load(); cert != nil {
					return cert, nil
				}
				return &tls.Certificate{}, nil
			},
		},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	c.http = &http.Client{Transport: c.tr, Timeout: 30 * time.Second}
	return c, nil
}

// setIdentity makes cert the client certificate of new connections, and
// closes idle ones so that no request goes out under the previous
// certificate, whose verified chain the broker keeps per connection.
func (c *brokerClient) setIdentity(cert *tls.Certificate) {
	c.cert.Store(cert)
	c.tr.CloseIdleConnections()
}

// post sends a JSON body and decodes a JSON response into out.
func (c *brokerClient) post(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, path, bytes.NewReader(b), out)
}

func (c *brokerClient) get(ctx context.Context, path string) ([]byte, error) {
	var raw json.RawMessage
	err := c.do(ctx, http.MethodGet, path, nil, &raw)
	return raw, err
}

func (c *brokerClient) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.addr+path, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("read response of %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := http.StatusText(resp.StatusCode)
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return &APIError{Status: resp.StatusCode, Message: msg}
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode response of %s %s: %w", method, path, err)
	}
	return nil
}

// unauthorized reports whether err is the broker rejecting the agent's
// credentials (an expired or revoked certificate, a spent join token).
func unauthorized(err error) bool {
	var e *APIError
	return errors.As(err, &e) && (e.Status == http.StatusUnauthorized)
}
