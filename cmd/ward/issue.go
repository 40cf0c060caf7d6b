package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newIssueCmd) }

func newIssueCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Obtain a short-lived credential",
	}
	cmd.AddCommand(newIssueX509Cmd(), newIssueJWTCmd(), newIssueDBCmd(), newIssueVaultCmd())
	return cmd
}

type x509Result struct {
	SPIFFEID    string    `json:"spiffe_id"`
	Certificate string    `json:"certificate"`
	Bundle      string    `json:"bundle"`
	Serial      string    `json:"serial"`
	LeaseID     string    `json:"lease_id"`
	ExpiresAt   time.Time `json:"expires_at"`
}

func newIssueX509Cmd() *cobra.Command {
	var (
		joinToken, joinTokenFile, spiffeID, ttl, keyType, outDir, output string
		dnsNames, ips                                                    []string
	)
	cmd := &cobra.Command{
		Use:   "x509 --out DIR [--join-token TOKEN | --spiffe-id ID]",
		Short: "Obtain an X.509-SVID: generate a key, send a CSR, write key, certificate and bundle",
		Long: `Generate a private key locally, send a certificate signing request to ward and
write DIR/key.pem (mode 0600), DIR/cert.pem and DIR/bundle.pem. The key never
leaves this machine. Files are replaced atomically.

A workload's first certificate uses --join-token (or --join-token-file); later
calls authenticate with WARD_CLIENT_CERT and WARD_CLIENT_KEY or WARD_TOKEN.`,
		Example: `  ward issue x509 --join-token "$TOKEN" --out ./svid
  ward issue x509 --spiffe-id spiffe://ward.test/ns/shop/sa/web --dns localhost --ttl 1h --out ./svid`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if outDir == "" {
				return usagef("missing --out DIR")
			}
			if joinTokenFile != "" {
				if joinToken != "" {
					return usagef("use --join-token or --join-token-file, not both")
				}
				b, err := os.ReadFile(joinTokenFile)
				if err != nil {
					return fmt.Errorf("read join token: %w", err)
				}
				joinToken = strings.TrimSpace(string(b))
			}
			if joinToken != "" && (spiffeID != "" || len(dnsNames) > 0 || len(ips) > 0) {
				return usagef("--join-token issues for the SPIFFE ID the token is bound to: drop --spiffe-id, --dns and --ip")
			}

			key, err := generateKey(keyType)
			if err != nil {
				return err
			}
			csr, err := makeCSR(key, spiffeID)
			if err != nil {
				return err
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}

			body := map[string]any{"csr": string(csr), "ttl": ttl}
			path := "/v1/issue/x509"
			if joinToken != "" {
				body["join_token"] = joinToken
				path = "/v1/auth/join"
			} else {
				if spiffeID != "" {
					body["spiffe_id"] = spiffeID
				}
				body["dns_names"] = dnsNames
				body["ip_addresses"] = ips
			}
			var resp x509Result
			if err := c.Do(cmd.Context(), http.MethodPost, path, body, &resp); err != nil {
				return apiError("issue certificate", err)
			}
			if err := writeSVID(outDir, key, resp); err != nil {
				return err
			}
			if output == outputJSON {
				return printJSON(cmd.OutOrStdout(), map[string]any{
					"spiffe_id": resp.SPIFFEID, "serial": resp.Serial, "lease_id": resp.LeaseID, "expires_at": resp.ExpiresAt,
					"key": filepath.Join(outDir, "key.pem"), "certificate": filepath.Join(outDir, "cert.pem"), "bundle": filepath.Join(outDir, "bundle.pem"),
				})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "spiffe_id   %s\nserial      %s\nlease_id    %s\nexpires_at  %s\nwritten     %s/{key,cert,bundle}.pem\n",
				resp.SPIFFEID, resp.Serial, resp.LeaseID, resp.ExpiresAt.Format(time.RFC3339), outDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&joinToken, "join-token", "", "one-use join token for a workload's first certificate")
	cmd.Flags().StringVar(&joinTokenFile, "join-token-file", "", "read the join token from this `file` (keeps it out of the process list)")
	cmd.Flags().StringVar(&spiffeID, "spiffe-id", "", "SPIFFE ID to issue for (default: the caller's own; another needs policy)")
	cmd.Flags().StringVar(&ttl, "ttl", "", "certificate lifetime, such as 1h (default: the server's default TTL)")
	cmd.Flags().StringVar(&keyType, "key-type", "ec-p256", "key to generate: ec-p256, ec-p384, ed25519 or rsa-2048")
	cmd.Flags().StringVar(&outDir, "out", "", "`directory` to write key.pem, cert.pem and bundle.pem into")
	cmd.Flags().StringSliceVar(&dnsNames, "dns", nil, "DNS name to include as a SAN (repeatable; needs issue on dns/<name>)")
	cmd.Flags().StringSliceVar(&ips, "ip", nil, "IP address to include as a SAN (repeatable; needs issue on ip/<addr>)")
	addOutputFlag(cmd, &output)
	return cmd
}

func generateKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "ec-p256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ec-p384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case "rsa-2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, usagef("invalid --key-type %q, want ec-p256, ec-p384, ed25519 or rsa-2048", keyType)
	}
}

func makeCSR(key crypto.Signer, spiffeID string) ([]byte, error) {
	tmpl := &x509.CertificateRequest{}
	if spiffeID != "" {
		u, err := url.Parse(spiffeID)
		if err != nil || u.Scheme != "spiffe" {
			return nil, usagef("invalid --spiffe-id %q, want spiffe://trust-domain/path", spiffeID)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// writeSVID replaces key, certificate and bundle. Both new files are written
// in full before either is renamed into place. If the certificate cannot be
// put in place, the previous key is restored, because a mismatched pair in
// key.pem and cert.pem would lock the workload out.
func writeSVID(dir string, key crypto.Signer, resp x509Result) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	clear(der)
	defer clear(keyPEM)

	keyPath, certPath, bundlePath := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "bundle.pem")
	newKey, err := writeTemp(keyPath, keyPEM, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", keyPath, err)
	}
	defer os.Remove(newKey)
	newCert, err := writeTemp(certPath, []byte(resp.Certificate), 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", certPath, err)
	}
	defer os.Remove(newCert)

	prevKey := keyPath + ".prev"
	os.Remove(prevKey)
	hadKey := os.Link(keyPath, prevKey) == nil
	defer os.Remove(prevKey)
	if err := os.Rename(newKey, keyPath); err != nil {
		return fmt.Errorf("replace %s: %w", keyPath, err)
	}
	if err := os.Rename(newCert, certPath); err != nil {
		if hadKey {
			os.Rename(prevKey, keyPath)
		}
		return fmt.Errorf("replace %s (the previous key and certificate are kept): %w", certPath, err)
	}
	if err := writeFileAtomic(bundlePath, []byte(resp.Bundle), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", bundlePath, err)
	}
	return nil
}

// writeTemp writes data to a synced temporary file beside path and returns
// its name.
func writeTemp(path string, data []byte, mode os.FileMode) (string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", err
	}
	name := tmp.Name()
	err = tmp.Chmod(mode)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// writeFileAtomic writes to a temporary file beside path and renames it.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := writeTemp(path, data, mode)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func newIssueJWTCmd() *cobra.Command {
	var (
		spiffeID, ttl, output string
		audience              []string
	)
	cmd := &cobra.Command{
		Use:     "jwt --audience AUD [--spiffe-id ID] [--ttl 5m]",
		Short:   "Obtain a JWT-SVID for an audience",
		Example: "  ward issue jwt --audience orders.shop --ttl 5m",
		Args:    argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if len(audience) == 0 {
				return usagef("missing --audience")
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			var resp struct {
				SPIFFEID  string    `json:"spiffe_id"`
				Token     string    `json:"token"`
				LeaseID   string    `json:"lease_id"`
				ExpiresAt time.Time `json:"expires_at"`
			}
			body := map[string]any{"audience": audience, "ttl": ttl, "spiffe_id": spiffeID}
			if err := c.Do(cmd.Context(), http.MethodPost, "/v1/issue/jwt", body, &resp); err != nil {
				return apiError("issue JWT", err)
			}
			if output == outputJSON {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), resp.Token)
			return err
		},
	}
	cmd.Flags().StringSliceVar(&audience, "audience", nil, "audience (repeatable)")
	cmd.Flags().StringVar(&spiffeID, "spiffe-id", "", "SPIFFE ID to issue for (default: the caller's own)")
	cmd.Flags().StringVar(&ttl, "ttl", "", "token lifetime, such as 5m")
	addOutputFlag(cmd, &output)
	return cmd
}
