package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// workloadHeader is the metadata header every Workload API request must
// carry; go-spiffe v2 clients send it (workloadapi/client.go, withHeader).
// A request without it did not come from a Workload API client.
const workloadHeader = "workload.spiffe.io"

// jwksRefresh is how long a fetched JWKS is used before it is fetched again.
const jwksRefresh = 5 * time.Minute

// workloadServer implements the SPIFFE Workload API over the agent's
// credentials: the x509 credentials as X.509-SVIDs, JWT-SVIDs fetched from
// the broker per audience, and the broker's bundles.
type workloadServer struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	a *Agent

	mu       sync.Mutex
	jwts     map[string]*issued // by audience list, joined with a NUL
	jwks     []byte
	jwksTime time.Time
}

var _ workload.SpiffeWorkloadAPIServer = (*workloadServer)(nil)

func newWorkloadGRPC(a *Agent) *grpc.Server {
	ws := &workloadServer{a: a, jwts: map[string]*issued{}}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := checkHeader(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := checkHeader(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	)
	workload.RegisterSpiffeWorkloadAPIServer(srv, ws)
	return srv
}

func checkHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(workloadHeader); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
}

// FetchX509SVID streams the x509 credentials, and again whenever one is
// renewed. Expired ones are left out; while none is valid nothing is sent.
func (s *workloadServer) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	if !s.a.hasKind("x509") {
		return status.Error(codes.PermissionDenied, "no X.509-SVID is configured for this workload: add an x509 credential to the agent configuration")
	}
	var lastSent string
	for {
		changed := s.a.watch()
		svids := s.a.current("x509")
		if key := serials(svids); len(svids) > 0 && key != lastSent {
			resp := &workload.X509SVIDResponse{}
			for _, c := range svids {
				keyDER, err := x509.MarshalPKCS8PrivateKey(c.key)
				if err != nil {
					return status.Error(codes.Internal, "encode private key")
				}
				resp.Svids = append(resp.Svids, &workload.X509SVID{
					SpiffeId:    c.spiffeID,
					X509Svid:    concatDER(c.chain),
					X509SvidKey: keyDER,
					Bundle:      concatDER(c.bundle),
					Hint:        c.name,
				})
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
			lastSent = key
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
	}
}

// FetchX509Bundles streams the trust bundle of the agent's trust domain.
func (s *workloadServer) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	var last []byte
	for {
		changed := s.a.watch()
		if td, bundle := s.a.bundle(); bundle != nil && !bytes.Equal(bundle, last) {
			if err := stream.Send(&workload.X509BundlesResponse{Bundles: map[string][]byte{td: bundle}}); err != nil {
				return err
			}
			last = bundle
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
	}
}

// FetchJWTSVID returns a JWT-SVID of the agent's identity for the audience,
// issued by the broker and reused until half its lifetime has passed.
func (s *workloadServer) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	if len(req.Audience) == 0 {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	id := s.a.spiffeID()
	if id == "" {
		return nil, status.Error(codes.Unavailable, "agent not yet authenticated")
	}
	if req.SpiffeId != "" && req.SpiffeId != id {
		return nil, status.Errorf(codes.PermissionDenied, "this agent serves only %s", id)
	}

	key := strings.Join(req.Audience, "\x00")
	s.mu.Lock()
	c := s.jwts[key]
	s.mu.Unlock()
	now := s.a.now()
	if c == nil || !now.Before(c.issuedAt.Add(c.lifetime()/2)) {
		fresh, err := issueJWT(ctx, s.a.broker, "workload-api", "", req.Audience, 0)
		if err != nil {
			s.a.log.Error("JWT-SVID for the Workload API not issued", "audience", req.Audience, "error", err)
			return nil, status.Error(codes.Unavailable, "JWT-SVID could not be issued")
		}
		c = fresh
		s.mu.Lock()
		s.jwts[key] = c
		s.mu.Unlock()
	}
	return &workload.JWTSVIDResponse{Svids: []*workload.JWTSVID{{SpiffeId: c.spiffeID, Svid: string(c.values["token"])}}}, nil
}

// FetchJWTBundles streams the broker's JWKS, and again when it changes.
func (s *workloadServer) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	var last []byte
	for {
		changed := s.a.watch()
		jwks, err := s.fetchJWKS(stream.Context(), false)
		if err == nil && !bytes.Equal(jwks, last) {
			if err := stream.Send(&workload.JWTBundlesResponse{Bundles: map[string][]byte{s.a.trustDomainID(): jwks}}); err != nil {
				return err
			}
			last = jwks
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
	}
}

// ValidateJWTSVID checks a JWT-SVID's signature against the broker's JWKS,
// its expiry and its audience.
func (s *workloadServer) ValidateJWTSVID(ctx context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	if req.Audience == "" || req.Svid == "" {
		return nil, status.Error(codes.InvalidArgument, "audience and svid must be specified")
	}
	td, err := spiffeid.TrustDomainFromString(s.a.trustDomainID())
	if err != nil {
		return nil, status.Error(codes.Unavailable, "agent not yet authenticated")
	}
	var svid *jwtsvid.SVID
	for _, refresh := range []bool{false, true} {
		jwks, ferr := s.fetchJWKS(ctx, refresh)
		if ferr != nil {
			return nil, status.Error(codes.Unavailable, "JWT bundle unavailable")
		}
		bundle, perr := jwtbundle.Parse(td, jwks)
		if perr != nil {
			return nil, status.Error(codes.Unavailable, "JWT bundle invalid")
		}
		svid, err = jwtsvid.ParseAndValidate(req.Svid, bundle, []string{req.Audience})
		if err == nil {
			break
		}
	}
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid JWT-SVID: %v", err)
	}
	claims, err := structpb.NewStruct(svid.Claims)
	if err != nil {
		return nil, status.Error(codes.Internal, "claims not representable")
	}
	return &workload.ValidateJWTSVIDResponse{SpiffeId: svid.ID.String(), Claims: claims}, nil
}

// fetchJWKS returns the broker's JWKS, fetched at most every jwksRefresh
// unless refresh is set.
func (s *workloadServer) fetchJWKS(ctx context.Context, refresh bool) ([]byte, error) {
	s.mu.Lock()
	jwks, at := s.jwks, s.jwksTime
	s.mu.Unlock()
	if jwks != nil && !refresh && s.a.now().Sub(at) < jwksRefresh {
		return jwks, nil
	}
	fresh, err := s.a.broker.get(ctx, "/v1/jwks")
	if err != nil {
		if jwks != nil {
			return jwks, nil // keep serving the last one while the broker is away
		}
		return nil, err
	}
	s.mu.Lock()
	s.jwks, s.jwksTime = fresh, s.a.now()
	s.mu.Unlock()
	return fresh, nil
}

// hasKind reports whether the configuration lists a credential of the kind.
func (a *Agent) hasKind(name string) bool {
	for i := range a.cfg.Credentials {
		if a.cfg.Credentials[i].kind == kinds[name] {
			return true
		}
	}
	return false
}

// spiffeID returns the agent's own SPIFFE ID, or "" before authentication.
func (a *Agent) spiffeID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.identity == nil {
		return ""
	}
	return a.identity.spiffeID
}

// trustDomainID returns spiffe://<trust domain> of the agent's identity.
func (a *Agent) trustDomainID() string {
	u, err := url.Parse(a.spiffeID())
	if err != nil || u.Host == "" {
		return ""
	}
	return "spiffe://" + u.Host
}

// bundle returns the trust domain and the DER trust bundle last received.
func (a *Agent) bundle() (string, []byte) {
	a.mu.Lock()
	id := a.identity
	a.mu.Unlock()
	if id == nil {
		return "", nil
	}
	return a.trustDomainID(), concatDER(id.bundle)
}

func concatDER(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}

func serials(cs []*issued) string {
	keys := make([]string, 0, len(cs))
	for _, c := range cs {
		keys = append(keys, c.serial)
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}
