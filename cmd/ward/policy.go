package main

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"

	"github.com/spf13/cobra"

	"ward.dev/ward/authz"
)

func init() { subcommands = append(subcommands, newPolicyCmd) }

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check, lint and reload the authorization policy",
	}
	cmd.AddCommand(newPolicyCheckCmd(), newPolicyLintCmd(), newPolicyReloadCmd())
	return cmd
}

type decisionView struct {
	Decision string `json:"decision"`
	Rule     string `json:"rule,omitempty"`
	Source   string `json:"source,omitempty"`
	Reason   string `json:"reason"`
}

func newPolicyCheckCmd() *cobra.Command {
	var modelPath, policyPath, output string
	cmd := &cobra.Command{
		Use:   "check SUBJECT DOMAIN OBJECT ACTION",
		Short: "Print allow or deny for a request, and the rule that decided",
		Long: `Print allow or deny for one request and the policy line that decided it.
With --policy (and --model) the files are evaluated locally; without, the
running server is asked. Exits 0 on allow and 1 on deny.`,
		Example: `  ward policy check spiffe://ward.test/ns/shop/sa/web dev x509/spiffe://ward.test/ns/shop/sa/web issue
  ward policy check --policy ./ward-data/policy.csv --model ./ward-data/model.conf role:admin dev policy reload`,
		Args: argsUsage(cobra.ExactArgs(4)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			var d decisionView
			if policyPath != "" {
				if modelPath == "" {
					modelPath = filepath.Join(filepath.Dir(policyPath), "model.conf")
				}
				e, err := authz.New(modelPath, policyPath)
				if err != nil {
					return err
				}
				res := e.Decide(args[0], args[1], args[2], args[3])
				d = decisionView{Decision: "deny", Rule: res.Rule, Source: res.Source, Reason: res.Reason}
				if res.Allowed {
					d.Decision = "allow"
				}
			} else {
				c, err := newAPIClient()
				if err != nil {
					return err
				}
				body := map[string]string{"subject": args[0], "domain": args[1], "object": args[2], "action": args[3]}
				if err := c.Do(cmd.Context(), http.MethodPost, "/v1/policy/check", body, &d); err != nil {
					return apiError("policy check", err)
				}
			}

			if output == outputJSON {
				if err := printJSON(cmd.OutOrStdout(), d); err != nil {
					return err
				}
			} else {
				line := d.Decision
				if d.Rule != "" {
					line += "  " + d.Source + "  " + d.Rule
				} else {
					line += "  " + d.Reason
				}
				fmt.Fprintln(cmd.OutOrStdout(), line)
			}
			if d.Decision != "allow" {
				return silentError{}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&modelPath, "model", "", "Casbin model `file` for local evaluation (default: model.conf beside --policy)")
	cmd.Flags().StringVar(&policyPath, "policy", "", "policy `file` to evaluate locally instead of asking the server")
	addOutputFlag(cmd, &output)
	return cmd
}

func newPolicyLintCmd() *cobra.Command {
	var modelPath, output string
	cmd := &cobra.Command{
		Use:     "lint POLICY_FILE [--model FILE]",
		Short:   "Check a policy file; print each finding with file:line",
		Example: "  ward policy lint ./ward-data/policy.csv",
		Args:    argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if modelPath == "" {
				modelPath = filepath.Join(filepath.Dir(args[0]), "model.conf")
			}
			findings := authz.Lint(modelPath, args[0])
			if output == outputJSON {
				if findings == nil {
					findings = []authz.Finding{}
				}
				if err := printJSON(cmd.OutOrStdout(), map[string]any{"findings": findings}); err != nil {
					return err
				}
			} else {
				for _, f := range findings {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", f.Source, f.Message)
				}
			}
			if len(findings) > 0 {
				return fmt.Errorf("policy lint: %d finding(s) in %s", len(findings), args[0])
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&modelPath, "model", "", "Casbin model `file` (default: model.conf beside the policy)")
	addOutputFlag(cmd, &output)
	return cmd
}

func newPolicyReloadCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "reload",
		Short:   "Make the server re-read its policy; a broken policy is rejected and the old one stays",
		Example: "  ward policy reload",
		Args:    argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			type reloaded struct {
				Version uint64 `json:"version"`
			}
			return callAPI(cmd, output, "policy reload", http.MethodPost, "/v1/policy/reload", nil, func(w io.Writer, resp reloaded) error {
				_, err := fmt.Fprintf(w, "policy reloaded, version %d\n", resp.Version)
				return err
			})
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}
