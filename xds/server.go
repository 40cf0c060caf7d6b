package xds

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultAddr     = "127.0.0.1:18000"
	DefaultDebounce = 100 * time.Millisecond
	DefaultSVIDTTL  = time.Hour
	// maxRequestBytes bounds one DiscoveryRequest. A NACK carries the
	// peer's error text, which gRPC fills with the rejected resource.
	maxRequestBytes = 1 << 20
	// maxStreamsPerConn bounds concurrent ADS streams on one connection.
	maxStreamsPerConn = 16
)

// ClientScope selects the client resources sent to proxyless gRPC nodes.
type ClientScope string

const (
	// ClientScopeAll sends every node the client resources of every
	// service. A call without connect permission then reaches the target's
	// RBAC filter and fails with PermissionDenied, which names the cause.
	// Build time and memory grow with the square of the service count.
	ClientScopeAll ClientScope = ""
	// ClientScopePermitted sends only the services the node may connect
	// to, so a node learns nothing about the others and builds grow
	// linearly. A call without permission cannot resolve its target: it
	// times out until gRPC's resource-does-not-exist timer fires (15 s in
	// grpc-go), then fails with Unavailable.
	ClientScopePermitted ClientScope = "permitted"
)

// Config configures a Server. Services may also be replaced later with
// SetServices.
type Config struct {
	// Addr is the ADS listen address, DefaultAddr when empty.
	Addr string
	// TrustDomain is the SPIFFE trust domain every service and node is in.
	TrustDomain string
	// Domain is the Casbin domain (environment) connect decisions are made in.
	Domain string
	// ServerID is the SPIFFE ID in ward's own ADS serving certificate,
	// spiffe://<TrustDomain>/ward/xds when empty.
	ServerID string
	Services []Service
	// GRPCClientScope selects which services a gRPC node gets client
	// resources for, ClientScopeAll when empty.
	GRPCClientScope ClientScope

	Authorizer Authorizer // required
	Issuer     Issuer     // required

	// ServerHosts are the DNS names and IP addresses put into the ADS
	// serving SVID when the Issuer implements ServingIssuer. When empty it
	// is the host of Addr, unless that is an unspecified address.
	ServerHosts []string
	// ServerCertificate, when set, supplies the ADS serving certificate in
	// place of an SVID issued for ServerID. Proxyless gRPC peers verify the
	// server's host name (gRFC A65 TLS channel credentials), so the
	// certificate must carry the IP or DNS SAN they dial.
	ServerCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)

	// SVIDTTL is the lifetime of SVIDs issued for Envoy SDS and for the ADS
	// serving certificate, DefaultSVIDTTL when zero. They are renewed at
	// half life.
	SVIDTTL time.Duration
	// Debounce delays a rebuild after PolicyChanged so bursts of changes
	// cause one push, DefaultDebounce when zero.
	Debounce time.Duration

	Logger *slog.Logger     // discards when nil
	Clock  func() time.Time // time.Now when nil
}

// Server is ward's xDS control plane. It is safe for concurrent use.
type Server struct {
	cfg         Config
	trustDomain spiffeid.TrustDomain
	log         *slog.Logger
	now         func() time.Time

	cache cache.SnapshotCache
	grpc  *grpc.Server
	tls   *tlsSource

	kick    chan struct{}
	buildMu sync.Mutex // serializes builds

	mu          sync.Mutex // guards the fields below
	services    []Service
	quarantined map[string]bool
	nodes       map[string]*nodeState
	streams     map[streamKey]*streamState
	build       buildStatus
	changed     chan struct{} // closed and replaced whenever an ACK, NACK or push happens
	svids       map[string]*issued

	// mutate, set only by tests, edits a node's rendered resources before
	// validation, to force configurations a peer rejects.
	mutate func(node string, res map[resource.Type][]types.Resource)
}

type buildStatus struct {
	at    time.Time
	err   error
	count uint64
}

// New validates cfg and returns a Server. It builds nothing until Serve.
func New(cfg Config) (*Server, error) {
	td, err := spiffeid.TrustDomainFromString(cfg.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("xds: trust domain %q: %w", cfg.TrustDomain, err)
	}
	if cfg.Authorizer == nil || cfg.Issuer == nil {
		return nil, errors.New("xds: Config.Authorizer and Config.Issuer are required")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.ServerID == "" {
		cfg.ServerID = "spiffe://" + td.Name() + "/ward/xds"
	}
	if len(cfg.ServerHosts) == 0 {
		if host, _, err := net.SplitHostPort(cfg.Addr); err == nil && host != "" {
			if ip, err := netip.ParseAddr(host); err != nil || !ip.IsUnspecified() {
				cfg.ServerHosts = []string{host}
			}
		}
	}
	if cfg.SVIDTTL <= 0 {
		cfg.SVIDTTL = DefaultSVIDTTL
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.GRPCClientScope != ClientScopeAll && cfg.GRPCClientScope != ClientScopePermitted {
		return nil, fmt.Errorf("xds: GRPCClientScope %q is invalid, want %q or %q", cfg.GRPCClientScope, ClientScopeAll, ClientScopePermitted)
	}
	if err := validateServices(cfg.Services, td); err != nil {
		return nil, fmt.Errorf("xds: %w", err)
	}

	s := &Server{
		cfg:         cfg,
		trustDomain: td,
		log:         cfg.Logger,
		now:         cfg.Clock,
		kick:        make(chan struct{}, 1),
		services:    slices.Clone(cfg.Services),
		quarantined: map[string]bool{},
		nodes:       map[string]*nodeState{},
		streams:     map[streamKey]*streamState{},
		changed:     make(chan struct{}),
		svids:       map[string]*issued{},
	}
	// The cache runs in non-ADS mode, because in ADS mode it sends no
	// response when a gRPC client requests a name it lacks, and gRPC needs
	// one.
	s.cache = cache.NewSnapshotCache(false, cache.IDHash{}, cpLogger{s.log})
	s.tls = newTLSSource(cfg.Issuer, cfg.ServerID, cfg.ServerHosts, td, cfg.ServerCertificate, cfg.SVIDTTL, s.now)

	xdsServer := serverv3.NewServer(context.Background(), s.cache, callbacks{s})
	s.grpc = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(s.tls.config())),
		grpc.MaxRecvMsgSize(maxRequestBytes),
		// A node needs one ADS stream per xDS client; the bound stops one
		// connection from opening streams without limit.
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// Pings find peers that vanished without closing, so their streams
		// and watches are released.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
	)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, xdsServer)
	return s, nil
}

// ListenAndServe listens on Config.Addr and serves until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context) error {
	lis, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("xds: listen: %w", err)
	}
	return s.Serve(ctx, lis)
}

// Serve builds the first snapshots and serves ADS on lis until ctx is done.
// A failed first build is logged and reported by Status; nodes then receive
// nothing until a build succeeds.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	_ = s.Rebuild(ctx)

	done := make(chan struct{})
	defer close(done)
	go s.run(ctx, done)
	go func() {
		select {
		case <-ctx.Done():
			// Stop, not GracefulStop: ADS streams never end on their own.
			s.grpc.Stop()
		case <-done:
		}
	}()

	s.log.Info("xds server listening", "addr", lis.Addr().String())
	if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("xds: serve: %w", err)
	}
	return nil
}

// PolicyChanged schedules a rebuild after the debounce delay. Call it when
// the Casbin policy, the trust bundle or anything else the rendering reads
// has changed. It never blocks.
func (s *Server) PolicyChanged() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// SetServices replaces the service catalogue and rebuilds at once. An
// invalid catalogue is rejected and the previous one stays in force.
func (s *Server) SetServices(ctx context.Context, services []Service) error {
	if err := validateServices(services, s.trustDomain); err != nil {
		return fmt.Errorf("xds: %w", err)
	}

	s.buildMu.Lock()
	s.mu.Lock()
	old := s.services
	s.services = slices.Clone(services)
	s.mu.Unlock()
	s.buildMu.Unlock()

	if err := s.Rebuild(ctx); err != nil {
		s.mu.Lock()
		s.services = old
		s.mu.Unlock()
		return err
	}
	return nil
}

// run performs debounced and renewal rebuilds until ctx or done ends.
func (s *Server) run(ctx context.Context, done <-chan struct{}) {
	renew := time.NewTimer(time.Hour)
	defer renew.Stop()
	for {
		renew.Reset(s.untilRenewal())
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-renew.C:
			_ = s.Rebuild(ctx)
		case <-s.kick:
			debounce := time.NewTimer(s.cfg.Debounce)
			select {
			case <-ctx.Done():
				debounce.Stop()
				return
			case <-debounce.C:
			}
			// Changes arriving during the delay are part of this build.
			select {
			case <-s.kick:
			default:
			}
			_ = s.Rebuild(ctx)
		}
	}
}

// FollowPolicy calls PolicyChanged for every value received from versions
// until ctx ends or versions is closed. It suits authz.Enforcer.Subscribe,
// which sends the policy version after each reload and quarantine change.
func (s *Server) FollowPolicy(ctx context.Context, versions <-chan uint64) {
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-versions:
			if !ok {
				return
			}
			s.PolicyChanged()
		}
	}
}
