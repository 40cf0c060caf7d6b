package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"ward.dev/ward/crypto/secret"
	"ward.dev/ward/masking/pii"
	"ward.dev/ward/masking/static"
	"ward.dev/ward/masking/transform"
)

func init() { subcommands = append(subcommands, newScanCmd) }

func newScanCmd() *cobra.Command {
	var (
		source, rulesOut, output string
		sample                   int
	)
	cmd := &cobra.Command{
		Use:   "scan --source URL [--rules-out FILE]",
		Short: "Find columns that likely hold personal data",
		Long: `scan samples the text-like columns of every table and reports likely e-mail
addresses, phone and fax numbers, card numbers (Luhn), IBANs, US social
security and UK National Insurance numbers, names, addresses, birth dates and
IP addresses, with a
confidence from 0 to 1. With --rules-out it writes a strict rules file that
masks each finding and keeps every other column; review it before use.`,
		Example: "  ward scan --source postgres://app@db/app --rules-out rules.yaml\n" +
			"  ward scan --source postgres://app@db/app --sample 1000 --output json",
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if source == "" {
				return usagef("--source is required")
			}
			if rulesOut != "" {
				if _, err := os.Stat(rulesOut); err == nil {
					return fmt.Errorf("%s exists; choose another --rules-out path", rulesOut)
				}
			}
			ctx := cmd.Context()
			conn, err := pgx.Connect(ctx, source)
			if err != nil {
				return fmt.Errorf("connecting to source: %w", err)
			}
			defer conn.Close(ctx)
			catalog, err := static.ReadCatalog(ctx, conn)
			if err != nil {
				return err
			}
			findings, err := pii.Scan(ctx, conn, catalog, pii.Options{Sample: sample})
			if err != nil {
				return err
			}

			if rulesOut != "" {
				// Suggest builds transformers only to check that they fit
				// each column, so a throwaway key serves.
				key, err := secret.Random(rand.Reader, transform.MasterKeyLen)
				if err != nil {
					return err
				}
				keys, err := transform.NewKeys(key)
				if err != nil {
					return err
				}
				if err := writeFileAtomic(rulesOut, pii.Suggest(findings, catalog, keys), 0o644); err != nil {
					return err
				}
			}

			if output == outputJSON {
				if findings == nil {
					findings = []pii.Finding{}
				}
				return printJSON(cmd.OutOrStdout(), map[string]any{"findings": findings, "rules_file": rulesOut})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "COLUMN\tKIND\tCONFIDENCE\tMATCHED")
			for _, f := range findings {
				fmt.Fprintf(tw, "%s\t%s\t%.2f\t%d/%d\n", f.Name, f.Kind, f.Confidence, f.Matched, f.Sampled)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if rulesOut != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s; check it with: ward mask validate --rules %s --source URL --strict\n", rulesOut, rulesOut)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&source, "source", "", "database connection `URL` to scan")
	cmd.Flags().StringVar(&rulesOut, "rules-out", "", "write a starting rules `file` here (must not exist)")
	cmd.Flags().IntVar(&sample, "sample", 200, "non-NULL values read per column")
	addOutputFlag(cmd, &output)
	return cmd
}
