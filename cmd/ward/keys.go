package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"ward.dev/ward/crypto/hsm"
	"ward.dev/ward/crypto/kek"
	"ward.dev/ward/crypto/kek/vaulttransit"
	"ward.dev/ward/crypto/keyset"
	"ward.dev/ward/crypto/secret"
)

func init() { subcommands = append(subcommands, newKeysCmd) }

// KEK types, as the kek.type setting and the --kek and --to flags name them.
const (
	kekLocal        = "local"
	kekPKCS11       = "pkcs11"
	kekVaultTransit = "vault-transit"
)

// keysetFlags locate a sealed keyset and the KEK that seals it now. HSM and
// Vault flags serve both the current KEK and the --to KEK of rewrap, so those
// two may not be of the same type, except local with two different files.
type keysetFlags struct {
	dataDir, keysetFile, kekType, kekFile string
	hsm                                   hsmFlags
	kekLabel                              string
	vaultAddr, vaultTokenEnv, vaultMount  string
	vaultKey, vaultCACert                 string

	opened []func() // closers of HSMs opened for the command
}

func (f *keysetFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "./ward-data", "data `directory` of ward serve")
	cmd.Flags().StringVar(&f.keysetFile, "keyset", "", "sealed keyset `file` (default <data-dir>/keyset.sealed)")
	cmd.Flags().StringVar(&f.kekType, "kek", kekLocal, "`type` of the KEK that seals the keyset now: local, pkcs11 or vault-transit")
	cmd.Flags().StringVar(&f.kekFile, "kek-file", "", "local KEK `file` (default <data-dir>/kek.key)")
	f.hsm.add(cmd)
	cmd.Flags().StringVar(&f.kekLabel, "kek-label", hsm.DefaultKEKLabel, "`label` of the AES KEK on the PKCS#11 token")
	cmd.Flags().StringVar(&f.vaultAddr, "vault-addr", os.Getenv("VAULT_ADDR"), "Vault `address` (default $VAULT_ADDR)")
	cmd.Flags().StringVar(&f.vaultTokenEnv, "vault-token-env", "VAULT_TOKEN", "environment `variable` that holds the Vault token")
	cmd.Flags().StringVar(&f.vaultMount, "vault-mount", "transit", "mount `path` of the Vault Transit engine")
	cmd.Flags().StringVar(&f.vaultKey, "vault-key", "ward-kek", "`name` of the Vault Transit key")
	cmd.Flags().StringVar(&f.vaultCACert, "vault-cacert", os.Getenv("VAULT_CACERT"), "PEM `file` of the CA of Vault's certificate (default $VAULT_CACERT)")
}

func (f *keysetFlags) keysetPath() string {
	if f.keysetFile != "" {
		return f.keysetFile
	}
	return filepath.Join(f.dataDir, "keyset.sealed")
}

func (f *keysetFlags) localKEKPath() string {
	if f.kekFile != "" {
		return f.kekFile
	}
	return filepath.Join(f.dataDir, "kek.key")
}

// openKEK returns the KEK of type kind. A local KEK is read from path, or
// created there when create is set and the file does not exist.
func (f *keysetFlags) openKEK(kind, path string, create bool) (kek.KEK, error) {
	switch kind {
	case kekLocal:
		l, err := kek.OpenLocal(path)
		if create && errors.Is(err, fs.ErrNotExist) {
			return kek.CreateLocal(path, rand.Reader)
		}
		return l, err

	case kekPKCS11:
		h, err := f.hsm.open()
		if err != nil {
			return nil, err
		}
		f.opened = append(f.opened, func() { _ = h.Close() })
		return h.KEK(hsm.KeyRef{Label: f.kekLabel})

	case kekVaultTransit:
		if f.vaultAddr == "" {
			return nil, usagef("missing --vault-addr (or VAULT_ADDR)")
		}
		token, ok := os.LookupEnv(f.vaultTokenEnv)
		if !ok || token == "" {
			return nil, usagef("environment variable %s with the Vault token is not set", f.vaultTokenEnv)
		}
		return vaulttransit.New(vaulttransit.Config{
			Address: f.vaultAddr, Token: secret.New([]byte(token)),
			Mount: f.vaultMount, Key: f.vaultKey, CACert: f.vaultCACert,
		})
	}
	return nil, usagef("invalid KEK type %q, want local, pkcs11 or vault-transit", kind)
}

// open unseals the keyset with the current KEK.
func (f *keysetFlags) open() (*keyset.Keyset, error) {
	k, err := f.openKEK(f.kekType, f.localKEKPath(), false)
	if err != nil {
		return nil, err
	}
	return keyset.Open(f.keysetPath(), k)
}

func (f *keysetFlags) close() {
	for _, c := range f.opened {
		c()
	}
}

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Rotate, rewrap and inspect the keyset that seals ward's keys",
		Example: `  ward keys status --data-dir ./ward-data
  ward keys rotate --data-dir ./ward-data
  ward keys rewrap --data-dir ./ward-data --to pkcs11 --module /usr/lib/softhsm/libsofthsm2.so --token-label ward --pin-file ./pin`,
		Args: argsUsage(cobra.NoArgs),
	}
	cmd.AddCommand(newKeysStatusCmd(), newKeysRotateCmd(), newKeysRewrapCmd())
	return cmd
}

// policyFlags set the rotation policy that status and rotate --if-due apply.
type policyFlags struct {
	maxAge         time.Duration
	maxEncryptions uint64
}

func (p *policyFlags) add(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&p.maxAge, "max-age", keyset.DefaultPolicy.MaxAge, "rotate when the primary key is older than this `duration`; 0 disables")
	cmd.Flags().Uint64Var(&p.maxEncryptions, "max-encryptions", keyset.DefaultPolicy.MaxEncryptions, "rotate after this many encryptions with the primary key; 0 disables")
}

func (p *policyFlags) policy() keyset.Policy {
	return keyset.Policy{MaxAge: p.maxAge, MaxEncryptions: p.maxEncryptions}
}

func newKeysStatusCmd() *cobra.Command {
	var flags keysetFlags
	var policy policyFlags
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the keys of the keyset with their ages and encryption counts",
		Example: `  ward keys status --data-dir ./ward-data
  ward keys status --data-dir ./ward-data --kek pkcs11 --module /usr/lib/softhsm/libsofthsm2.so --token-label ward --pin-env WARD_HSM_PIN --output json`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			defer flags.close()
			ks, err := flags.open()
			if err != nil {
				return err
			}

			st := ks.Status()
			due, reason := ks.RotationDue(policy.policy())
			if output == outputJSON {
				return printJSON(cmd.OutOrStdout(), struct {
					keyset.Status
					RotationDue    bool   `json:"rotation_due"`
					RotationReason string `json:"rotation_reason,omitempty"`
				}{st, due, reason})
			}

			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "keyset %s sealed by %s\n", st.Path, st.KEK)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY ID\tPRIMARY\tSTATUS\tCREATED\tAGE\tENCRYPTIONS (UPPER BOUND)")
			for _, k := range st.Keys {
				created := k.Created.Format(time.RFC3339)
				if k.Estimated {
					created += " (estimated)"
				}
				fmt.Fprintf(tw, "%d\t%v\t%s\t%s\t%s\t%d\n", k.ID, k.Primary, k.Status, created, time.Duration(k.Age), k.Encryptions)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if due {
				fmt.Fprintf(w, "rotation due (%s): run ward keys rotate\n", reason)
			}
			return nil
		},
	}
	flags.add(cmd)
	policy.add(cmd)
	addOutputFlag(cmd, &output)
	return cmd
}

func newKeysRotateCmd() *cobra.Command {
	var flags keysetFlags
	var policy policyFlags
	var ifDue bool
	var output string
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Add a new primary key to the keyset; older keys still decrypt",
		Long: `Add a new AES-256-GCM primary key to the keyset and reseal it atomically.
Older keys stay in the keyset, so everything they encrypted stays readable.
A running ward serve keeps its keys in memory: restart it to encrypt with
the new key.`,
		Example: `  ward keys rotate --data-dir ./ward-data
  ward keys rotate --data-dir ./ward-data --if-due --max-age 720h --output json`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			defer flags.close()
			ks, err := flags.open()
			if err != nil {
				return err
			}

			result := struct {
				Rotated bool   `json:"rotated"`
				KeyID   uint32 `json:"key_id,omitempty"`
				Reason  string `json:"reason,omitempty"`
			}{}
			due, reason := ks.RotationDue(policy.policy())
			if ifDue && !due {
				result.Reason = "no limit reached"
			} else {
				if result.KeyID, err = ks.Rotate(); err != nil {
					return err
				}
				result.Rotated, result.Reason = true, reason
			}

			if output == outputJSON {
				return printJSON(cmd.OutOrStdout(), result)
			}
			if !result.Rotated {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), "rotation not due: no limit of the policy reached")
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "rotated %s: new primary key %d; restart ward serve to use it\n", ks.Path(), result.KeyID)
			return err
		},
	}
	flags.add(cmd)
	policy.add(cmd)
	cmd.Flags().BoolVar(&ifDue, "if-due", false, "rotate only when the policy (--max-age, --max-encryptions) says so")
	addOutputFlag(cmd, &output)
	return cmd
}

func newKeysRewrapCmd() *cobra.Command {
	var flags keysetFlags
	var to, toKEKFile, output string
	cmd := &cobra.Command{
		Use:   "rewrap",
		Short: "Reseal the keyset under another key-encryption key",
		Long: `Reseal the keyset under another KEK and replace the file atomically. The
keys inside do not change, so all data stays readable. Afterwards only the
new KEK opens the keyset: set kek.type in the configuration to match. The
old KEK still opens older copies of the keyset file, such as backups.`,
		Example: `  ward keys rewrap --data-dir ./ward-data --to pkcs11 --module /usr/lib/softhsm/libsofthsm2.so --token-label ward --pin-file ./pin
  ward keys rewrap --data-dir ./ward-data --kek pkcs11 --module /usr/lib/softhsm/libsofthsm2.so --token-label ward --pin-file ./pin --to local --to-kek-file ./ward-data/kek2.key
  VAULT_TOKEN=... ward keys rewrap --data-dir ./ward-data --to vault-transit --vault-addr https://127.0.0.1:8200 --vault-key ward-kek`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			switch {
			case to == "":
				return usagef("missing --to: local, pkcs11 or vault-transit")
			case to == kekLocal && toKEKFile == "":
				return usagef("--to local needs --to-kek-file, the new local KEK file (created when missing)")
			case to == kekLocal && flags.kekType == kekLocal && filepath.Clean(toKEKFile) == filepath.Clean(flags.localKEKPath()):
				return usagef("--to-kek-file is the current KEK file %s", toKEKFile)
			case to != kekLocal && to == flags.kekType:
				return usagef("the keyset is already sealed by a %s KEK, so rewrap it to local first to move it to another %s key", to, to)
			}
			defer flags.close()

			ks, err := flags.open()
			if err != nil {
				return err
			}
			target, err := flags.openKEK(to, toKEKFile, true)
			if err != nil {
				return err
			}
			if err := ks.Rewrap(target); err != nil {
				return err
			}

			st := ks.Status()
			if output == outputJSON {
				return printJSON(cmd.OutOrStdout(), map[string]string{"keyset": st.Path, "kek": st.KEK, "kek_type": to})
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "keyset %s is now sealed by %s; point ward serve's kek setting at it (kek.type: %s, and kek.path for a local key file) and restart it\n", st.Path, st.KEK, to)
			return err
		},
	}
	flags.add(cmd)
	cmd.Flags().StringVar(&to, "to", "", "`type` of the new KEK: local, pkcs11 or vault-transit")
	cmd.Flags().StringVar(&toKEKFile, "to-kek-file", "", "new local KEK `file` for --to local, created with mode 0600 when missing")
	addOutputFlag(cmd, &output)
	return cmd
}
