package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"ward.dev/ward/crypto/kek"
	"ward.dev/ward/crypto/keyset"
	"ward.dev/ward/crypto/secret"
	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/static"
	"ward.dev/ward/masking/transform"
)

func init() { subcommands = append(subcommands, newMaskCmd) }

// keyFlags locate the masking key: a key file, sealed by a keyset under a
// local KEK when --keyset is given.
type keyFlags struct {
	keyFile, keysetFile, kekFile string
}

func (k *keyFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&k.keyFile, "key-file", "", "masking key `file` (mode 0600), made by ward mask keygen")
	cmd.Flags().StringVar(&k.keysetFile, "keyset", "", "Tink keyset `file` that seals the key file")
	cmd.Flags().StringVar(&k.kekFile, "kek-file", "", "local KEK `file` that seals the keyset")
}

func (k *keyFlags) openKeyset() (*keyset.Keyset, error) {
	if k.keysetFile == "" {
		return nil, nil
	}
	if k.kekFile == "" {
		return nil, usagef("--keyset needs --kek-file")
	}
	l, err := kek.OpenLocal(k.kekFile)
	if err != nil {
		return nil, err
	}
	return keyset.Open(k.keysetFile, l)
}

// load returns the masking key, or nil when no --key-file was given. Rules
// that need a key then fail with a message naming the rule's line.
func (k *keyFlags) load() (*transform.Keys, error) {
	if k.keyFile == "" {
		return nil, nil
	}
	ks, err := k.openKeyset()
	if err != nil {
		return nil, err
	}
	return transform.LoadKeyFile(k.keyFile, ks)
}

func newMaskCmd() *cobra.Command {
	var (
		rulesFile, format, table, null, output string
		keys                                   keyFlags
	)
	cmd := &cobra.Command{
		Use:   "mask --rules FILE --key-file FILE INPUT OUTPUT",
		Short: "Write a masked copy of a file or database",
		Long: `mask writes a masked copy of a CSV, TSV, JSON Lines or plain SQL (pg_dump)
file. The output file appears only when every row is masked. The subcommands
copy a PostgreSQL database masked (db), check rules against a database
(validate) and create a masking key (keygen).`,
		Example: `  ward mask keygen --key-file masking.key
  ward mask --rules rules.yaml --key-file masking.key dump.sql masked.sql
  ward mask --rules rules.yaml --key-file masking.key --table public.customer customers.csv masked.csv
  ward mask db --rules rules.yaml --key-file masking.key --source postgres://prod/app --target postgres://test/app_masked
  ward mask validate --rules rules.yaml --source postgres://prod/app --strict`,
		Args: argsUsage(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if rulesFile == "" {
				return usagef("--rules is required")
			}
			f, err := fileFormat(format, args[0])
			if err != nil {
				return err
			}
			rs, err := rules.Load(rulesFile)
			if err != nil {
				return err
			}
			k, err := keys.load()
			if err != nil {
				return err
			}
			stats, err := static.MaskFile(rs, k, args[0], args[1], static.FileOptions{Format: f, Table: table, Null: null})
			if err != nil {
				return err
			}
			return printStats(cmd.OutOrStdout(), output, stats)
		},
	}
	cmd.Flags().StringVar(&rulesFile, "rules", "", "masking rules `file` (YAML)")
	cmd.Flags().StringVar(&format, "format", "", "input format: csv, tsv, jsonl or pgdump (default: from the file extension)")
	cmd.Flags().StringVar(&table, "table", "", "schema.table whose rules apply to a CSV, TSV or JSON Lines file (default: public.<file name>)")
	cmd.Flags().StringVar(&null, "null", "", "text that stands for NULL in CSV and TSV")
	keys.add(cmd)
	addOutputFlag(cmd, &output)
	cmd.AddCommand(newMaskDBCmd(), newMaskValidateCmd(), newMaskKeygenCmd())
	return cmd
}

func fileFormat(flag, path string) (static.Format, error) {
	if flag != "" {
		f, err := static.ParseFormat(flag)
		if err != nil {
			return "", usageError{err}
		}
		return f, nil
	}
	return static.DetectFormat(path)
}

func printStats(w io.Writer, output string, stats *static.Stats) error {
	if output == outputJSON {
		return printJSON(w, stats)
	}
	names := make([]string, 0, len(stats.Tables))
	for n := range stats.Tables {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tROWS")
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t%d\n", n, stats.Tables[n])
	}
	return tw.Flush()
}

func newMaskDBCmd() *cobra.Command {
	var (
		rulesFile, source, target, output string
		jobs                              int
		keys                              keyFlags
	)
	cmd := &cobra.Command{
		Use:   "db --rules FILE --key-file FILE --source URL --target URL",
		Short: "Copy a PostgreSQL database into an empty one, masked",
		Long: `db copies the schema (pg_dump --schema-only), every table through the
masking rules, and the sequences from the source database into the target,
which must exist and hold none of the source's tables. On failure it drops
what it created and names the table and row. pg_dump and psql must be on PATH.`,
		Example: "  ward mask db --rules rules.yaml --key-file masking.key \\\n" +
			"    --source postgres://app@db/app --target postgres://app@testdb/app_masked --jobs 4",
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if rulesFile == "" || source == "" || target == "" {
				return usagef("--rules, --source and --target are required")
			}
			if jobs < 1 {
				return usagef("--jobs %d: want at least 1 table at a time", jobs)
			}
			rs, err := rules.Load(rulesFile)
			if err != nil {
				return err
			}
			k, err := keys.load()
			if err != nil {
				return err
			}
			opts := static.DBOptions{Source: source, Target: target, Jobs: jobs}
			stderr := cmd.ErrOrStderr()
			if isTerminal(stderr) {
				opts.Progress = newProgress(stderr).report
			} else {
				opts.Logger = slog.New(slog.NewTextHandler(stderr, nil))
			}
			// SIGINT and SIGTERM cancel the copy, which then drops what it
			// created. A second signal during that cleanup ends ward at once.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				stop()
			}()
			stats, err := static.CopyDatabase(ctx, rs, k, opts)
			if err != nil {
				if ctx.Err() != nil && cmd.Context().Err() == nil {
					return fmt.Errorf("interrupted by a signal: %w", err)
				}
				return err
			}
			return printStats(cmd.OutOrStdout(), output, stats)
		},
	}
	cmd.Flags().StringVar(&rulesFile, "rules", "", "masking rules `file` (YAML)")
	cmd.Flags().StringVar(&source, "source", "", "source database connection `URL`")
	cmd.Flags().StringVar(&target, "target", "", "target database connection `URL`; the database must exist and be empty")
	cmd.Flags().IntVar(&jobs, "jobs", 2, "tables copied at once")
	keys.add(cmd)
	addOutputFlag(cmd, &output)
	return cmd
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress prints one updating line per running copy on a terminal.
type progress struct {
	mu sync.Mutex
	w  io.Writer
}

func newProgress(w io.Writer) *progress { return &progress{w: w} }

func (p *progress) report(table string, rows int64, done bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if done {
		fmt.Fprintf(p.w, "\r\033[K%s: %d rows copied\n", table, rows)
		return
	}
	fmt.Fprintf(p.w, "\r\033[K%s: %d rows...", table, rows)
}

func newMaskValidateCmd() *cobra.Command {
	var (
		rulesFile, source, output string
		strict                    bool
	)
	cmd := &cobra.Command{
		Use:   "validate --rules FILE --source URL [--strict]",
		Short: "Check masking rules against a database schema",
		Long: `validate reports rules on unknown tables or columns (schema drift), unknown
transformers and bad parameters, transformers that cannot produce a column's
type or length, null on NOT NULL columns, non-injective transformers on
UNIQUE columns and, with --strict, columns no rule classifies. It exits 1
when it finds a problem. It needs no masking key.`,
		Example: "  ward mask validate --rules rules.yaml --source postgres://app@db/app --strict --output json",
		Args:    argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if rulesFile == "" || source == "" {
				return usagef("--rules and --source are required")
			}
			rs, err := rules.Load(rulesFile)
			if err != nil {
				return err
			}
			catalog, err := readCatalog(cmd.Context(), source)
			if err != nil {
				return err
			}
			// Validation builds each transformer but masks nothing, so a
			// throwaway key replaces the real one.
			key, err := secret.Random(rand.Reader, transform.MasterKeyLen)
			if err != nil {
				return err
			}
			k, err := transform.NewKeys(key)
			if err != nil {
				return err
			}
			findings := rules.Validate(rs, catalog, k, strict)
			if output == outputJSON {
				if findings == nil {
					findings = []rules.Finding{}
				}
				if err := printJSON(cmd.OutOrStdout(), map[string]any{"ok": len(findings) == 0, "findings": findings}); err != nil {
					return err
				}
			} else {
				for _, f := range findings {
					fmt.Fprintln(cmd.OutOrStdout(), f.String())
				}
			}
			if len(findings) > 0 {
				return fmt.Errorf("%d problem(s) in %s", len(findings), rulesFile)
			}
			if output == outputText {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d rules valid against %d tables\n", rulesFile, len(rs.Rules), len(catalog.Tables))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&rulesFile, "rules", "", "masking rules `file` (YAML)")
	cmd.Flags().StringVar(&source, "source", "", "database connection `URL` whose schema the rules must fit")
	cmd.Flags().BoolVar(&strict, "strict", false, "also report columns that no rule classifies")
	addOutputFlag(cmd, &output)
	return cmd
}

func readCatalog(ctx context.Context, dsn string) (*rules.Catalog, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connecting to source: %w", err)
	}
	defer conn.Close(context.Background())
	return static.ReadCatalog(ctx, conn)
}

func newMaskKeygenCmd() *cobra.Command {
	var keys keyFlags
	cmd := &cobra.Command{
		Use:   "keygen --key-file FILE [--keyset FILE --kek-file FILE]",
		Short: "Create a masking key file",
		Long: `keygen writes 32 random bytes as a new masking key file with mode 0600. With
--keyset, the key is sealed by that Tink keyset (itself sealed by the local
KEK in --kek-file), so the file alone does not reveal it. It never overwrites
an existing file: data masked under a key can only be matched with that key.`,
		Example: "  ward mask keygen --key-file masking.key\n" +
			"  ward mask keygen --key-file masking.key --keyset ward-data/keyset.sealed --kek-file ward-data/kek.key",
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keys.keyFile == "" {
				return usagef("--key-file is required")
			}
			ks, err := keys.openKeyset()
			if err != nil {
				return err
			}
			if ks != nil {
				err = transform.SealKeyFile(keys.keyFile, ks, rand.Reader)
			} else {
				err = transform.GenerateKeyFile(keys.keyFile, rand.Reader)
			}
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%s exists; choose another path or remove it knowingly", keys.keyFile)
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "wrote masking key %s\n", keys.keyFile)
			return err
		},
	}
	keys.add(cmd)
	return cmd
}
