package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"ward.dev/ward/broker/agent"
	"ward.dev/ward/internal/config"
)

func init() { subcommands = append(subcommands, newAgentCmd) }

func newAgentCmd() *cobra.Command {
	var (
		configPath string
		initOnly   bool
		initWait   time.Duration
		logLevel   string
		logFormat  string
	)
	cmd := &cobra.Command{
		Use:   "agent --config FILE [--init-only] [-- COMMAND [ARG...]]",
		Short: "Run the sidecar that fetches, writes and renews a workload's credentials",
		Long: `Run the ward agent: authenticate to the broker (join token, Kubernetes
service-account token or an existing ward certificate), fetch the credentials
the configuration lists, write them and the rendered templates atomically into
output_dir, renew each at half its lifetime and signal the application.

It serves the SPIFFE Workload API and Envoy SDS on Unix sockets, and /healthz
and /readyz on health.listen, when configured.

With --init-only it writes everything once and exits (an init container).
With a command after --, it runs the application as its child, with the
credential file paths in WARD_<NAME>_<FIELD>_FILE and tokens, database
usernames, passwords and DSNs also in WARD_<NAME>_<FIELD>. It signals or
restarts the child when credentials change (notify.on_exec), and exits with
the child's exit code.

SIGINT and SIGTERM stop the agent.`,
		Example: `  ward agent --config /etc/ward/agent.yaml
  ward agent --config agent.yaml --init-only
  ward agent --config agent.yaml -- /usr/bin/myapp --port 8080`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if configPath == "" {
				return usagef("missing --config FILE")
			}
			if initOnly && len(args) > 0 {
				return usagef("--init-only takes no command to run")
			}
			if cmd.ArgsLenAtDash() < 0 && len(args) > 0 {
				return usagef("put the application command after --, as in: ward agent --config FILE -- myapp")
			}
			if err := checkLogFlags(logLevel, logFormat); err != nil {
				return err
			}
			cfg, err := agent.LoadConfig(configPath)
			if err != nil {
				return err
			}
			log := newLogger(config.Log{Level: logLevel, Format: logFormat})
			a, err := agent.New(cfg, agent.Options{Log: log, Exec: args})
			if err != nil {
				return err
			}

			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if initOnly {
				ictx, cancel := context.WithTimeout(ctx, initWait)
				defer cancel()
				if err := a.InitOnly(ictx); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "credentials written to %s\n", cfg.OutputDir)
				return nil
			}

			err = a.Run(ctx)
			var exit *agent.ExitError
			if errors.As(err, &exit) {
				os.Exit(exit.Code)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "agent YAML configuration `file`")
	cmd.Flags().BoolVar(&initOnly, "init-only", false, "write the credentials and templates once, then exit")
	cmd.Flags().DurationVar(&initWait, "init-timeout", 2*time.Minute, "with --init-only, give up after this `duration`")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cmd.Flags().StringVar(&logFormat, "log-format", "text", "log format: text or json")
	return cmd
}

// checkLogFlags validates --log-level and --log-format.
func checkLogFlags(level, format string) error {
	switch level {
	case "debug", "info", "warn", "error":
	default:
		return usagef("invalid --log-level %q, want debug, info, warn or error", level)
	}
	if format != "text" && format != "json" {
		return usagef("invalid --log-format %q, want text or json", format)
	}
	return nil
}
