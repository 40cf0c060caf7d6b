package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"ward.dev/ward/broker/inject"
	"ward.dev/ward/internal/config"
)

func init() { subcommands = append(subcommands, newInjectorCmd) }

func newInjectorCmd() *cobra.Command {
	var (
		listen, certFile, keyFile          string
		cfg                                inject.Config
		failurePolicy, logLevel, logFormat string
	)
	cmd := &cobra.Command{
		Use:   "injector --tls-cert FILE --tls-key FILE --agent-image IMAGE --broker-addr URL",
		Short: "Run the Kubernetes mutating webhook that adds the ward agent to annotated pods",
		Long: `Run the mutating admission webhook (AdmissionReview v1 over TLS 1.3, POST
/mutate). A pod created with the annotation ward.dev/inject: "true" gets an
init container running ward agent --init-only, the agent sidecar, a
memory-backed volume at /ward/secrets, and an agent configuration built from
its ward.dev/secret-<name>, ward.dev/audience-<name>, ward.dev/template-<name>,
ward.dev/init-only and ward.dev/spiffe-id annotations.

--failure-policy says what happens to a pod the injector cannot handle:
deny rejects it with the reason; allow admits it without the agent and with
a warning. Pair it with the MutatingWebhookConfiguration's failurePolicy,
which covers an unreachable webhook.

The TLS certificate and key are read again when their files change.`,
		Example: `  ward injector --tls-cert /tls/tls.crt --tls-key /tls/tls.key \
    --agent-image ghcr.io/ward/ward:0.1.0 --broker-addr https://ward.ward-system.svc:8443`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if certFile == "" || keyFile == "" {
				return usagef("missing --tls-cert or --tls-key")
			}
			switch failurePolicy {
			case "deny":
			case "allow":
				cfg.FailOpen = true
			default:
				return usagef("invalid --failure-policy %q, want deny or allow", failurePolicy)
			}
			if err := checkLogFlags(logLevel, logFormat); err != nil {
				return err
			}
			log := newLogger(config.Log{Level: logLevel, Format: logFormat})
			in, err := inject.New(cfg, log)
			if err != nil {
				return usageError{err}
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log.Info("injector serving", "addr", ln.Addr().String(), "failure_policy", failurePolicy)
			err = in.Serve(ctx, ln, certFile, keyFile)
			log.Info("injector stopped")
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", ":8444", "webhook listen `address`")
	f.StringVar(&certFile, "tls-cert", "", "webhook certificate PEM `file`")
	f.StringVar(&keyFile, "tls-key", "", "webhook private key PEM `file`")
	f.StringVar(&cfg.AgentImage, "agent-image", "", "container `image` of the injected agent")
	f.StringVar(&cfg.BrokerAddr, "broker-addr", "", "ward API `URL` the agents use, https://host:port")
	f.StringVar(&cfg.CAConfigMap, "ca-configmap", "ward-ca", "ConfigMap `name` in each pod's namespace holding ward's CA as ca.pem")
	f.StringVar(&cfg.TokenAudience, "token-audience", "ward", "audience of the projected service-account token")
	f.Int64Var(&cfg.TokenSeconds, "token-seconds", 3600, "lifetime in `seconds` of the projected token (at least 600)")
	f.StringVar(&cfg.IdentityTTL, "identity-ttl", "1h", "lifetime of each agent's own certificate")
	f.StringVar(&failurePolicy, "failure-policy", "deny", "pods the injector cannot handle: deny or allow (unmodified)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "json", "log format: text or json")
	return cmd
}
