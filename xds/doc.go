// Package xds is ward's mesh control plane: it translates the service
// catalogue and the Casbin `connect` policy into xDS resources and serves them
// over an aggregated discovery service (ADS, gRPC xDS protocol v3) built on
// go-control-plane.
//
// Two kinds of node are supported. Envoy sidecars get an inbound listener that
// requires a client certificate and admits only permitted SPIFFE IDs through
// a network RBAC filter, outbound clusters with upstream TLS, and their
// certificates over SDS. Proxyless gRPC peers get the server listener, client
// listeners, routes, clusters and endpoints that gRPC-Go's xDS client accepts,
// with certificates read from files by gRPC's file_watcher certificate
// provider.
//
// Security contract:
//   - The ADS endpoint requires mutual TLS 1.3 with a certificate chaining to
//     the ward trust bundle, and a node receives configuration only for the
//     SPIFFE ID in its certificate: a stream whose node id differs is closed.
//   - RBAC is deny by default. A listener whose service has no permitted
//     caller, or is quarantined, admits nobody. Translation never drops a rule
//     it cannot express: the build fails and the last good configuration stays.
//   - Every snapshot passes proto validation, go-control-plane's consistency
//     check and ward's route-to-cluster check before it is pushed.
//   - Private keys in SDS secrets are never logged, and ward's version
//     strings never hash them. On delta streams go-control-plane v0.14 sends
//     each resource's SHA-256 as its version, to the node that receives the
//     key itself.
package xds
