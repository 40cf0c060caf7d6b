package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"ward.dev/ward/crypto/hsm"
	"ward.dev/ward/crypto/secret"
)

func init() { subcommands = append(subcommands, newHSMCmd) }

// hsmFlags locate a PKCS#11 token and its user PIN. The PIN comes from a
// file or an environment variable, never from the command line, where other
// users could read it in the process list.
type hsmFlags struct {
	module, tokenLabel, pinFile, pinEnv string
}

func (f *hsmFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.module, "module", "", "PKCS#11 library `path`, such as /usr/lib/softhsm/libsofthsm2.so")
	cmd.Flags().StringVar(&f.tokenLabel, "token-label", "", "`label` of the token, as pkcs11-tool --list-slots shows it")
	cmd.Flags().StringVar(&f.pinFile, "pin-file", "", "`file` (mode 0600) whose first line is the user PIN")
	cmd.Flags().StringVar(&f.pinEnv, "pin-env", "", "environment `variable` that holds the user PIN")
}

// config checks the flags and reads the PIN.
func (f *hsmFlags) config() (hsm.Config, error) {
	switch {
	case f.module == "":
		return hsm.Config{}, usagef("missing --module: the path of the PKCS#11 library")
	case f.tokenLabel == "":
		return hsm.Config{}, usagef("missing --token-label")
	case f.pinFile == "" && f.pinEnv == "":
		return hsm.Config{}, usagef("missing PIN: give --pin-file or --pin-env")
	case f.pinFile != "" && f.pinEnv != "":
		return hsm.Config{}, usagef("give only one of --pin-file and --pin-env")
	}

	var pin secret.Bytes
	var err error
	if f.pinFile != "" {
		pin, err = hsm.PINFromFile(f.pinFile)
	} else {
		pin, err = hsm.PINFromEnv(f.pinEnv)
	}
	if err != nil {
		return hsm.Config{}, err
	}
	return hsm.Config{Module: f.module, TokenLabel: f.tokenLabel, PIN: pin}, nil
}

func (f *hsmFlags) open() (*hsm.HSM, error) {
	cfg, err := f.config()
	if err != nil {
		return nil, err
	}
	return hsm.Open(cfg)
}

func newHSMCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hsm",
		Short: "Create and list ward's keys on a PKCS#11 token",
		Example: `  ward hsm init --module /usr/lib/softhsm/libsofthsm2.so --token-label ward --pin-file ./pin
  ward hsm list --module /usr/lib/softhsm/libsofthsm2.so --token-label ward --pin-env WARD_HSM_PIN`,
		Args: argsUsage(cobra.NoArgs),
	}
	cmd.AddCommand(newHSMInitCmd(), newHSMListCmd())
	return cmd
}

func newHSMInitCmd() *cobra.Command {
	var flags hsmFlags
	var opts hsm.InitOptions
	var output string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the CA signing key (EC P-256) and the key-encryption key (AES-256) on the token",
		Long: `Create ward's keys on an initialized token. Both secret keys are token
objects that never leave the token (CKA_SENSITIVE true, CKA_EXTRACTABLE
false) and that only the logged-in user can use. The command fails without
creating anything when an object with either label exists.`,
		Example: `  softhsm2-util --init-token --free --label ward
  ward hsm init --module /usr/lib/softhsm/libsofthsm2.so --token-label ward --pin-file ./pin --output json`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			h, err := flags.open()
			if err != nil {
				return err
			}
			defer h.Close()

			created, err := h.InitKeys(opts)
			if err != nil {
				return err
			}
			return printObjects(cmd, output, created)
		},
	}
	flags.add(cmd)
	cmd.Flags().StringVar(&opts.CALabel, "ca-label", hsm.DefaultCALabel, "`label` of the CA key pair to create")
	cmd.Flags().StringVar(&opts.KEKLabel, "kek-label", hsm.DefaultKEKLabel, "`label` of the AES key-encryption key to create")
	addOutputFlag(cmd, &output)
	return cmd
}

func newHSMListCmd() *cobra.Command {
	var flags hsmFlags
	var prefix, output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the objects on the token whose label starts with a prefix",
		Example: `  ward hsm list --module /usr/lib/softhsm/libsofthsm2.so --token-label ward --pin-file ./pin
  ward hsm list --module /usr/lib/softhsm/libsofthsm2.so --token-label ward --pin-env WARD_HSM_PIN --label-prefix "" --output json`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			h, err := flags.open()
			if err != nil {
				return err
			}
			defer h.Close()

			objects, err := h.List(prefix)
			if err != nil {
				return err
			}
			return printObjects(cmd, output, objects)
		},
	}
	flags.add(cmd)
	cmd.Flags().StringVar(&prefix, "label-prefix", "ward-", "list objects whose label starts with this `prefix`; empty lists all")
	addOutputFlag(cmd, &output)
	return cmd
}

func printObjects(cmd *cobra.Command, output string, objects []hsm.Object) error {
	if output == outputJSON {
		if objects == nil {
			objects = []hsm.Object{}
		}
		return printJSON(cmd.OutOrStdout(), map[string]any{"objects": objects})
	}

	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LABEL\tCLASS\tTYPE\tID\tSENSITIVE\tEXTRACTABLE")
	for _, o := range objects {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Label, o.Class, o.KeyType, o.ID, flagText(o.Sensitive), flagText(o.Extractable))
	}
	return tw.Flush()
}

// flagText prints an optional boolean attribute, "-" when the class has none.
func flagText(b *bool) string {
	if b == nil {
		return "-"
	}
	return fmt.Sprint(*b)
}
