package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"ward.dev/ward/broker/server"
	"ward.dev/ward/internal/config"
)

func init() { subcommands = append(subcommands, newServeCmd) }

func newServeCmd() *cobra.Command {
	var (
		configPath string
		dev        bool
		dataDir    string
		listen     string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the ward gateway",
		Long: `Run the ward gateway: the credential API over HTTPS (TLS 1.3).

With --dev, ward needs nothing else: on first start it creates its data
directory with a key-encryption key, a sealed keyset, a root CA, a JWT
signing key, a SQLite store, a Casbin model and policy, and an admin token,
and prints the environment the CLI needs. A restart reuses all of it.
Without --dev, --config names a YAML file.

SIGHUP reloads the policy; SIGINT and SIGTERM stop the server.`,
		Example: "  ward serve --dev\n  ward serve --config /etc/ward/ward.yaml",
		Args:    argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" && !dev {
				return usagef("serve needs --config FILE or --dev")
			}
			cfg := config.Defaults()
			if configPath != "" {
				var err error
				if cfg, err = config.Load(configPath); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("data-dir") || configPath == "" {
				cfg.DataDir = dataDir
			}
			if listen != "" {
				cfg.Listen.API = listen
			}
			abs, err := filepath.Abs(cfg.DataDir)
			if err != nil {
				return err
			}
			cfg.DataDir = abs
			return runServe(cmd, cfg)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "YAML configuration `file`")
	cmd.Flags().BoolVar(&dev, "dev", false, "development mode: create everything needed in the data directory")
	cmd.Flags().StringVar(&dataDir, "data-dir", "./ward-data", "data `directory` for keys, store, policy and audit log")
	cmd.Flags().StringVar(&listen, "listen", "", "API listen `address` (host:port), overriding the configuration; port 0 picks a free port")
	return cmd
}

func runServe(cmd *cobra.Command, cfg config.Config) error {
	log := newLogger(cfg.Log)
	ln, err := net.Listen("tcp", cfg.Listen.API)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen.API, err)
	}
	addr := "https://" + ln.Addr().String()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	started := false
	err = server.Run(ctx, cfg, log, ln, func(srv *server.Server) {
		started = true
		log.Info("ward serving", "addr", addr, "trust_domain", cfg.TrustDomain, "environment", cfg.Environment, "data_dir", cfg.DataDir)
		printEnvironment(cmd, addr, srv.Config())
		go func() {
			for range hup {
				_ = srv.ReloadPolicy() // logged inside; the old policy stays on error
			}
		}()
	})
	if started {
		log.Info("ward stopped")
	}
	return err
}

// printEnvironment prints the lines a user pastes into a shell. The admin
// token is referenced by its file, so it never appears in the output.
func printEnvironment(cmd *cobra.Command, addr string, cfg config.Config) {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "ward is serving on %s (trust domain %s, environment %s).\n", addr, cfg.TrustDomain, cfg.Environment)
	fmt.Fprintf(out, "To use the CLI, paste into a shell:\n\n")
	fmt.Fprintf(out, "export WARD_ADDR=%s\n", addr)
	fmt.Fprintf(out, "export WARD_CACERT=%s\n", shellQuote(filepath.Join(cfg.DataDir, "ca.pem")))
	fmt.Fprintf(out, "export WARD_TOKEN=\"$(cat %s)\"\n\n", shellQuote(filepath.Join(cfg.DataDir, "admin.token")))
}

func newLogger(c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// shellQuote quotes s for a POSIX shell when it holds anything unusual.
func shellQuote(s string) string {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '/' || c == '.' || c == '-' || c == '_') {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}
