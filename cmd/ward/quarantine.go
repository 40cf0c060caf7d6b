package main

import (
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newQuarantineCmd, newReleaseCmd) }

func newQuarantineCmd() *cobra.Command {
	var reason, output string
	var list bool
	cmd := &cobra.Command{
		Use:   "quarantine SPIFFE_ID --reason TEXT",
		Short: "Cut an identity off: deny it everywhere and revoke its leases",
		Long: `Quarantine a SPIFFE ID: every policy decision from or about it is denied
(so the mesh rejects its connections and the masking proxy shows it nothing
in clear), its active leases are revoked, and no new credential is issued to
it until "ward release". The quarantine survives restarts. --list shows the
identities in quarantine.`,
		Example: `  ward quarantine spiffe://ward.test/ns/shop/sa/web --reason "compromised pod"
  ward quarantine --list`,
		Args: argsUsage(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			if list {
				if len(args) > 0 {
					return usagef("--list takes no SPIFFE ID")
				}
				var resp struct {
					Quarantined []struct {
						SPIFFEID string `json:"spiffe_id"`
						Reason   string `json:"reason"`
					} `json:"quarantined"`
				}
				if err := c.Do(cmd.Context(), http.MethodGet, "/v1/mesh/quarantine", nil, &resp); err != nil {
					return apiError("list quarantine", err)
				}
				if output == outputJSON {
					return printJSON(cmd.OutOrStdout(), resp)
				}
				for _, q := range resp.Quarantined {
					fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", q.SPIFFEID, q.Reason)
				}
				return nil
			}
			if len(args) != 1 {
				return usagef("quarantine needs one SPIFFE_ID")
			}
			if reason == "" {
				return usagef("missing --reason")
			}
			var resp struct {
				SPIFFEID      string `json:"spiffe_id"`
				RevokedLeases int    `json:"revoked_leases"`
			}
			body := map[string]string{"spiffe_id": args[0], "reason": reason}
			if err := c.Do(cmd.Context(), http.MethodPost, "/v1/mesh/quarantine", body, &resp); err != nil {
				return apiError("quarantine", err)
			}
			if output == outputJSON {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s quarantined, %d lease(s) revoked\n", resp.SPIFFEID, resp.RevokedLeases)
			return err
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the identity is cut off (recorded in the audit log)")
	cmd.Flags().BoolVar(&list, "list", false, "list the identities in quarantine")
	addOutputFlag(cmd, &output)
	return cmd
}

func newReleaseCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "release SPIFFE_ID",
		Short:   "Lift the quarantine of an identity",
		Example: "  ward release spiffe://ward.test/ns/shop/sa/web",
		Args:    argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]string{"spiffe_id": args[0]}
			return callAPI(cmd, output, "release", http.MethodPost, "/v1/mesh/release", body, func(w io.Writer, _ map[string]any) error {
				_, err := fmt.Fprintf(w, "%s released\n", args[0])
				return err
			})
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}
