package main

import (
	"fmt"
	"maps"

	"github.com/spf13/cobra"

	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/transform"
)

func init() {
	subcommands = append(subcommands, func() *cobra.Command { return newTokenizeCmd(false) })
	subcommands = append(subcommands, func() *cobra.Command { return newTokenizeCmd(true) })
}

// newTokenizeCmd builds ward tokenize, or ward detokenize when reverse is
// set. Both run locally with the masking key file.
func newTokenizeCmd(reverse bool) *cobra.Command {
	var (
		rulesFile, rule, output string
		keys                    keyFlags
	)
	name, resultKey := "tokenize", "tokens"
	short := "Turn values into reversible tokens with the masking key"
	example := "  ward tokenize --key-file masking.key --rules rules.yaml --rule public.customer.email alice@example.com\n" +
		"  ward tokenize --key-file masking.key --rule email alice@example.com bob@example.com --output json"
	if reverse {
		name, resultKey = "detokenize", "values"
		short = "Turn tokens back into values with the masking key"
		example = "  ward detokenize --key-file masking.key --rules rules.yaml --rule public.customer.email tok_M0p..."
	}
	cmd := &cobra.Command{
		Use:   name + " --key-file FILE --rule RULE " + map[bool]string{false: "VALUE", true: "TOKEN"}[reverse] + "...",
		Short: short,
		Long: short + `, offline.

The rule is either a schema.table.column whose rule in --rules uses the
tokenize transformer (its key, domain and prefix parameters apply), or,
without --rules, a domain name: tokens of one domain detokenize only in that
domain. Tokens are deterministic, so the same value gives the same token.`,
		Example: example,
		Args:    argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if rule == "" || keys.keyFile == "" {
				return usagef("--rule and --key-file are required")
			}
			params, err := tokenizeParams(rulesFile, rule)
			if err != nil {
				return err
			}
			k, err := keys.load()
			if err != nil {
				return err
			}
			tok, err := transform.NewTokenizer(k, params)
			if err != nil {
				return err
			}
			var out []string
			if reverse {
				out, err = tok.DetokenizeBatch(args)
			} else {
				out, err = tok.TokenizeBatch(args)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if output == outputJSON {
				return printJSON(cmd.OutOrStdout(), map[string][]string{resultKey: out})
			}
			for _, v := range out {
				fmt.Fprintln(cmd.OutOrStdout(), v)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&rulesFile, "rules", "", "masking rules `file` that holds the rule")
	cmd.Flags().StringVar(&rule, "rule", "", "schema.table.column of a tokenize rule in --rules, or a domain name without --rules")
	keys.add(cmd)
	addOutputFlag(cmd, &output)
	return cmd
}

// tokenizeParams returns the tokenizer parameters of a rule.
func tokenizeParams(rulesFile, rule string) (map[string]string, error) {
	if rulesFile == "" {
		return map[string]string{"domain": rule}, nil
	}
	col, err := rules.ParseColumn(rule)
	if err != nil {
		return nil, usageError{err}
	}
	rs, err := rules.Load(rulesFile)
	if err != nil {
		return nil, err
	}
	r, ok := rs.Rule(col)
	if !ok {
		return nil, fmt.Errorf("%s has no rule for %s", rulesFile, col)
	}
	if r.Transformer != "tokenize" {
		return nil, fmt.Errorf("%s: %s uses %s, not tokenize", r.Pos(), col, r.Transformer)
	}
	// The rule's own parameters apply, so tokens match those that ward
	// mask wrote for this column.
	return maps.Clone(r.Params), nil
}
