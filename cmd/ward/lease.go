package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newLeaseCmd) }

type leaseView struct {
	ID           string            `json:"id"`
	Kind         string            `json:"kind"`
	Object       string            `json:"object"`
	Subject      string            `json:"subject"`
	Serial       string            `json:"serial,omitempty"`
	IssuedAt     time.Time         `json:"issued_at"`
	ExpiresAt    time.Time         `json:"expires_at"`
	MaxExpiresAt time.Time         `json:"max_expires_at"`
	Renewable    bool              `json:"renewable"`
	State        string            `json:"state"`
	Meta         map[string]string `json:"meta,omitempty"`
}

func newLeaseCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lease",
		Short: "List, renew and revoke leases",
	}
	cmd.AddCommand(newLeaseListCmd(), newLeaseRenewCmd(), newLeaseRevokeCmd())
	return cmd
}

func newLeaseListCmd() *cobra.Command {
	var prefix, state, output string
	var limit int
	cmd := &cobra.Command{
		Use:     "list [--prefix P] [--state active|revoked|expired]",
		Short:   "List leases (your own, or all with read on lease/*)",
		Example: "  ward lease list --prefix x509/spiffe://ward.test/ns/shop/ --state active",
		Args:    argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if prefix != "" {
				q.Set("prefix", prefix)
			}
			if state != "" {
				q.Set("state", state)
			}
			if limit > 0 {
				q.Set("limit", fmt.Sprint(limit))
			}
			type leaseList struct {
				Leases []leaseView `json:"leases"`
			}
			return callAPI(cmd, output, "list leases", http.MethodGet, "/v1/leases?"+q.Encode(), nil, func(w io.Writer, resp leaseList) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "LEASE ID\tSTATE\tEXPIRES")
				for _, l := range resp.Leases {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", l.ID, l.State, l.ExpiresAt.Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "only leases whose id starts with this")
	cmd.Flags().StringVar(&state, "state", "", "only leases in this state: active, revoked or expired")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many leases, newest first (default 1000)")
	addOutputFlag(cmd, &output)
	return cmd
}

func newLeaseRenewCmd() *cobra.Command {
	var increment, output string
	cmd := &cobra.Command{
		Use:     "renew LEASE_ID [--increment 1h]",
		Short:   "Extend a renewable lease, never past its maximum TTL",
		Example: "  ward lease renew db/shop-readonly/3q2-x9 --increment 1h",
		Args:    argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]string{"lease_id": args[0], "increment": increment}
			return callAPI(cmd, output, "renew lease", http.MethodPost, "/v1/leases/renew", body, func(w io.Writer, l leaseView) error {
				_, err := fmt.Fprintf(w, "%s renewed until %s\n", l.ID, l.ExpiresAt.Format(time.RFC3339))
				return err
			})
		},
	}
	cmd.Flags().StringVar(&increment, "increment", "", "new lifetime from now, such as 1h (default: the server's default TTL)")
	addOutputFlag(cmd, &output)
	return cmd
}

func newLeaseRevokeCmd() *cobra.Command {
	var prefix, output string
	cmd := &cobra.Command{
		Use:   "revoke LEASE_ID | --prefix PREFIX",
		Short: "Revoke one lease, or every active lease under a prefix",
		Example: `  ward lease revoke x509/spiffe://ward.test/ns/shop/sa/web/Xq3...
  ward lease revoke --prefix db/shop-readonly`,
		Args: argsUsage(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			body := map[string]string{}
			switch {
			case len(args) == 1 && prefix == "":
				body["lease_id"] = args[0]
			case len(args) == 0 && prefix != "":
				body["prefix"] = prefix
			default:
				return usagef("give one LEASE_ID or --prefix, not both or neither")
			}
			type revoked struct {
				Revoked int `json:"revoked"`
			}
			return callAPI(cmd, output, "revoke", http.MethodPost, "/v1/leases/revoke", body, func(w io.Writer, resp revoked) error {
				_, err := fmt.Fprintf(w, "revoked %d lease(s)\n", resp.Revoked)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "revoke every active lease whose id starts with this")
	addOutputFlag(cmd, &output)
	return cmd
}
