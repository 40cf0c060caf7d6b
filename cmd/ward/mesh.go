package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newMeshCmd) }

func newMeshCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mesh",
		Short: "Inspect the xDS control plane and manage mesh services",
	}
	cmd.AddCommand(newMeshStatusCmd(), newMeshServiceCmd())
	return cmd
}

func newMeshStatusCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "status",
		Short:   "Show, per node and resource type, the version accepted and any NACK",
		Example: "  ward mesh status\n  ward mesh status --output json",
		Args:    argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			var st struct {
				BuildError string `json:"build_error"`
				Nodes      []struct {
					Node        string `json:"node"`
					Streams     int    `json:"streams"`
					Quarantined bool   `json:"quarantined"`
					Types       []struct {
						Type     string `json:"type"`
						Accepted string `json:"accepted_version"`
						NACK     *struct {
							Version string `json:"version"`
							Message string `json:"message"`
						} `json:"nack"`
					} `json:"types"`
				} `json:"nodes"`
			}
			raw, err := c.Raw(cmd.Context(), http.MethodGet, "/v1/mesh/status", nil)
			if err != nil {
				return apiError("mesh status", err)
			}
			if output == outputJSON {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			if err := jsonUnmarshal(raw, &st); err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			if st.BuildError != "" {
				fmt.Fprintf(w, "last build failed, previous configuration kept: %s\n", st.BuildError)
			}
			fmt.Fprintln(w, "NODE\tTYPE\tACCEPTED\tNACK")
			for _, n := range st.Nodes {
				for _, t := range n.Types {
					nack := ""
					if t.NACK != nil {
						nack = t.NACK.Version + ": " + t.NACK.Message
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", n.Node, shortType(t.Type), t.Accepted, nack)
				}
			}
			return w.Flush()
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

func shortType(t string) string {
	for i := len(t) - 1; i >= 0; i-- {
		if t[i] == '.' {
			return t[i+1:]
		}
	}
	return t
}

func newMeshServiceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Add, remove and list mesh services",
	}
	var (
		svc    meshServiceFlags
		output string
	)
	add := &cobra.Command{
		Use:     "add --name NAME --spiffe-id ID --kind envoy|grpc --endpoint IP:PORT",
		Short:   "Add or replace a service; an invalid catalogue is rejected and nothing is pushed",
		Example: "  ward mesh service add --name orders --spiffe-id spiffe://ward.test/ns/shop/sa/orders --kind grpc --endpoint 127.0.0.1:7001",
		Args:    argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if svc.name == "" || svc.spiffeID == "" || svc.kind == "" || len(svc.endpoints) == 0 {
				return usagef("--name, --spiffe-id, --kind and --endpoint are required")
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			body := map[string]any{"name": svc.name, "spiffe_id": svc.spiffeID, "kind": svc.kind,
				"endpoints": svc.endpoints, "app_port": svc.appPort, "local_port": svc.localPort}
			if err := c.Do(cmd.Context(), http.MethodPost, "/v1/mesh/services", body, nil); err != nil {
				return apiError("add service", err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "service %s added\n", svc.name)
			return err
		},
	}
	add.Flags().StringVar(&svc.name, "name", "", "service name; gRPC clients dial xds:///NAME")
	add.Flags().StringVar(&svc.spiffeID, "spiffe-id", "", "the service's SPIFFE ID")
	add.Flags().StringVar(&svc.kind, "kind", "", "data plane: envoy or grpc")
	add.Flags().StringSliceVar(&svc.endpoints, "endpoint", nil, "IP:PORT the service accepts connections on (repeatable)")
	add.Flags().Uint32Var(&svc.appPort, "app-port", 0, "loopback port of the application behind an Envoy sidecar")
	add.Flags().Uint32Var(&svc.localPort, "local-port", 0, "loopback port where callers' sidecars expose this service")

	remove := &cobra.Command{
		Use:     "remove NAME",
		Short:   "Remove a service added through the API",
		Example: "  ward mesh service remove orders",
		Args:    argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), http.MethodDelete, "/v1/mesh/services/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return apiError("remove service", err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "service %s removed\n", args[0])
			return err
		},
	}

	list := &cobra.Command{
		Use:     "list",
		Short:   "List mesh services",
		Example: "  ward mesh service list --output json",
		Args:    argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			type serviceList struct {
				Services []struct {
					Name      string   `json:"name"`
					SPIFFEID  string   `json:"spiffe_id"`
					Kind      string   `json:"kind"`
					Endpoints []string `json:"endpoints"`
				} `json:"services"`
			}
			return callAPI(cmd, output, "list services", http.MethodGet, "/v1/mesh/services", nil, func(w io.Writer, resp serviceList) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tKIND\tSPIFFE ID\tENDPOINTS")
				for _, s := range resp.Services {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", s.Name, s.Kind, s.SPIFFEID, s.Endpoints)
				}
				return tw.Flush()
			})
		},
	}
	addOutputFlag(list, &output)
	cmd.AddCommand(add, remove, list)
	return cmd
}

type meshServiceFlags struct {
	name, spiffeID, kind string
	endpoints            []string
	appPort, localPort   uint32
}
