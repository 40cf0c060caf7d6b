package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

func newIssueDBCmd() *cobra.Command {
	var ttl, outFile, output string
	var viaProxy bool
	cmd := &cobra.Command{
		Use:   "db ROLE [--ttl 1h] [--out FILE]",
		Short: "Obtain a dynamic database login: username, password and DSN",
		Long: `Ask ward for a PostgreSQL login of a configured role. The login expires
with its lease, and "ward lease revoke" drops it at once. Without --out the
credential is printed; with --out it is written to FILE (mode 0600) as
shell-style lines: WARD_DB_USERNAME, WARD_DB_PASSWORD and WARD_DB_DSN.

With --via-proxy the login works only at ward's PostgreSQL masking proxy,
which connects upstream with credentials the client never sees and masks
every column this caller may not see in clear.`,
		Example: `  ward issue db shop-readonly --ttl 30m
  ward issue db shop-readonly --out ./db.env --output json
  ward issue db chinook --via-proxy`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			var resp struct {
				Username  string    `json:"username"`
				Password  string    `json:"password"`
				DSN       string    `json:"dsn"`
				LeaseID   string    `json:"lease_id"`
				ExpiresAt time.Time `json:"expires_at"`
			}
			if err := c.Do(cmd.Context(), http.MethodPost, "/v1/issue/db", map[string]any{"role": args[0], "ttl": ttl, "via_proxy": viaProxy}, &resp); err != nil {
				return apiError("issue database login", err)
			}

			if outFile != "" {
				content := fmt.Sprintf("WARD_DB_USERNAME=%s\nWARD_DB_PASSWORD=%s\nWARD_DB_DSN=%s\n",
					shellQuote(resp.Username), shellQuote(resp.Password), shellQuote(resp.DSN))
				if err := writeFileAtomic(outFile, []byte(content), 0o600); err != nil {
					return fmt.Errorf("write %s: %w", outFile, err)
				}
				resp.Password = "" // written to the file, not printed
			}
			if output == outputJSON {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "username    %s\n", resp.Username)
			if resp.Password != "" {
				fmt.Fprintf(w, "password    %s\n", resp.Password)
			} else {
				fmt.Fprintf(w, "password    written to %s\n", outFile)
			}
			fmt.Fprintf(w, "dsn         %s\nlease_id    %s\nexpires_at  %s\n", resp.DSN, resp.LeaseID, resp.ExpiresAt.Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&ttl, "ttl", "", "login lifetime, such as 1h (default: the role's default_ttl)")
	cmd.Flags().StringVar(&outFile, "out", "", "write the credential to this `file` (mode 0600) instead of printing the password")
	cmd.Flags().BoolVar(&viaProxy, "via-proxy", false, "a login for ward's PostgreSQL masking proxy instead of the database itself")
	addOutputFlag(cmd, &output)
	return cmd
}

func newIssueVaultCmd() *cobra.Command {
	var ttl, output string
	cmd := &cobra.Command{
		Use:   "vault PATH [--ttl 1h]",
		Short: "Obtain a Vault-held secret through ward: kv/<mount>/<path> or <mount>/creds/<role>",
		Long: `Ask ward for a secret that Vault holds. ward checks its policy (issue on
vault/<PATH>), reads the secret with its own Vault token and records a lease:
a KV v2 secret (kv/<mount>/<path>) is returned with its version; dynamic
credentials (<mount>/creds/<role>) come with a Vault lease that "ward lease
renew" and "ward lease revoke" forward to Vault.`,
		Example: `  ward issue vault kv/secret/payments/stripe --output json
  ward issue vault database/creds/orders --ttl 30m`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			var resp struct {
				Data      map[string]string `json:"data,omitempty"`
				Version   int               `json:"version,omitempty"`
				Username  string            `json:"username,omitempty"`
				Password  string            `json:"password,omitempty"`
				LeaseID   string            `json:"lease_id"`
				ExpiresAt time.Time         `json:"expires_at"`
			}
			if err := c.Do(cmd.Context(), http.MethodPost, "/v1/issue/vault", map[string]string{"path": args[0], "ttl": ttl}, &resp); err != nil {
				return apiError("issue Vault secret", err)
			}
			if output == outputJSON {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			w := cmd.OutOrStdout()
			for k, v := range resp.Data {
				fmt.Fprintf(w, "%-11s %s\n", k, v)
			}
			if resp.Username != "" {
				fmt.Fprintf(w, "username    %s\npassword    %s\n", resp.Username, resp.Password)
			}
			fmt.Fprintf(w, "lease_id    %s\nexpires_at  %s\n", resp.LeaseID, resp.ExpiresAt.Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&ttl, "ttl", "", "lease lifetime, such as 1h")
	addOutputFlag(cmd, &output)
	return cmd
}
