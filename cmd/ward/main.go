// Command ward is the secrets and data-protection gateway: the server
// (`ward serve`) and the client commands that talk to it. This package parses
// flags and wires packages together; the logic lives in broker, crypto,
// masking, authz and xds.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes shared by every command.
const (
	exitOK     = 0
	exitFailed = 1 // the operation was refused or failed
	exitUsage  = 2 // bad flags or arguments
	outputJSON = "json"
	outputText = "text"
)

// usageError marks an error caused by bad flags or arguments, so main exits with 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usage error; commands return it for bad arguments.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func main() {
	root := newRootCmd()
	err := root.Execute()
	if err == nil {
		os.Exit(exitOK)
	}

	var silent silentError
	if !errors.As(err, &silent) {
		fmt.Fprintln(os.Stderr, "ward: "+err.Error())
	}
	var usage usageError
	// Cobra reports a mistyped top-level command with a plain error, the
	// only usage error that bypasses the hooks above.
	if errors.As(err, &usage) || strings.HasPrefix(err.Error(), "unknown command ") {
		os.Exit(exitUsage)
	}
	os.Exit(exitFailed)
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "ward",
		Short:         "Secrets and data-protection gateway",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Cobra reports unknown flags and wrong argument counts through this hook
	// or from Args; both are usage errors.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	for _, add := range subcommands {
		root.AddCommand(add())
	}
	rejectUnknownSubcommands(root)
	return root
}

// rejectUnknownSubcommands makes every command that only groups others
// fail with a usage error on a mistyped subcommand. Cobra reports that only
// for the root; elsewhere it prints help and exits 0, so a script would
// take "ward lease revok ID" for a revocation.
func rejectUnknownSubcommands(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		rejectUnknownSubcommands(c)
	}
	if cmd.HasSubCommands() && cmd.Run == nil && cmd.RunE == nil && cmd.HasParent() {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q; see %s --help", args[0], c.CommandPath(), c.CommandPath())
			}
			return nil
		}
		cmd.RunE = func(c *cobra.Command, _ []string) error {
			return usagef("%s needs a subcommand; see %s --help", c.CommandPath(), c.CommandPath())
		}
	}
}

// subcommands lists the constructors of the top-level commands. Each command
// file appends its constructor in an init function, so files for separate
// areas (broker, keys, masking, mesh) do not edit a shared list.
var subcommands []func() *cobra.Command

// argsUsage wraps a cobra argument validator so that its failure exits with 2.
func argsUsage(validate cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := validate(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
