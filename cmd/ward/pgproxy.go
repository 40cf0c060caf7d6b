package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"ward.dev/ward/authz"
	"ward.dev/ward/masking/pgproxy"
)

func init() { subcommands = append(subcommands, newPGProxyCmd) }

func newPGProxyCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "pgproxy",
		Short: "Run the PostgreSQL masking proxy",
		Long: `Run the PostgreSQL masking proxy on its own.

Clients connect with ordinary PostgreSQL tools and a login from the
configuration (or a ward client certificate); the proxy logs in upstream
with the password named by upstream.password (an environment variable or
a file) and masks every value the caller may not unmask, as the masking
rules say.

The YAML configuration has these keys (relative paths are relative to
the file):

  listen, environment (the Casbin domain of the callers)
  tls: {cert_file, key_file, client_ca_file, require}
  upstream: {address, database, user, password: {env|file}, tls, ca_file,
             server_name}
  policy: {model, policy}   the Casbin model and policy; ward serve --dev
                            writes a model.conf into its data directory
  rules, masking_key_file
  unknown_lineage: redact | reject
  writes: read-only | passthrough
  ddl: reject | allow       schema changes in passthrough mode; a caller
                            who may change the schema can redefine what a
                            masked name reads, so reject is the default
  strict: true | false
  logins: [{user, spiffe_id, password: {env|file}}]
  limits: {max_message_bytes, max_connections, connect_timeout}

SIGHUP reloads the policy; SIGINT and SIGTERM stop the proxy.`,
		Example: "  ward pgproxy --config /etc/ward/pgproxy.yaml",
		Args:    argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return usagef("pgproxy needs --config FILE")
			}
			cfg, err := pgproxy.LoadConfig(configPath)
			if err != nil {
				return err
			}
			if cfg.Policy.Model == "" {
				return errors.New(configPath + ": policy.model and policy.policy are required for ward pgproxy")
			}
			return runPGProxy(cfg)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "YAML configuration `file`")
	return cmd
}

func runPGProxy(cfg *pgproxy.Config) error {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	enf, err := authz.New(cfg.Policy.Model, cfg.Policy.Policy, authz.WithLogger(log))
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.Where("policy"), err)
	}
	opts, err := pgproxy.Load(cfg, enf, log)
	if err != nil {
		return err
	}
	srv, err := pgproxy.New(opts)
	if err != nil {
		return err
	}
	defer srv.Close()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := enf.Reload(); err != nil {
					log.Error("policy reload failed", "err", err)
				}
			}
		}
	}()
	return srv.Serve(ctx, ln)
}
