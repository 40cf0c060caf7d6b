package main

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newTokenCmd) }

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage join tokens",
	}
	cmd.AddCommand(newTokenCreateCmd())
	return cmd
}

func newTokenCreateCmd() *cobra.Command {
	var (
		spiffeID, ttl, output string
	)
	cmd := &cobra.Command{
		Use:   "create --spiffe-id ID [--ttl 10m]",
		Short: "Create a one-use join token bound to a SPIFFE ID",
		Long: `Create a join token: a one-use credential, bound to one SPIFFE ID, that a
workload exchanges for its first certificate with "ward issue x509 --join-token".`,
		Example: "  ward token create --spiffe-id spiffe://ward.test/ns/shop/sa/web --ttl 10m",
		Args:    argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if spiffeID == "" {
				return usagef("missing --spiffe-id")
			}
			type created struct {
				Token     string    `json:"token"`
				SPIFFEID  string    `json:"spiffe_id"`
				ExpiresAt time.Time `json:"expires_at"`
			}
			req := map[string]string{"spiffe_id": spiffeID, "ttl": ttl}
			return callAPI(cmd, output, "create join token", http.MethodPost, "/v1/tokens/join", req, func(w io.Writer, resp created) error {
				_, err := fmt.Fprintln(w, resp.Token)
				return err
			})
		},
	}

	cmd.Flags().StringVar(&spiffeID, "spiffe-id", "", "SPIFFE ID the token is bound to")
	cmd.Flags().StringVar(&ttl, "ttl", "", "lifetime of the token, such as 10m (default: the server's join token TTL)")
	addOutputFlag(cmd, &output)
	return cmd
}
