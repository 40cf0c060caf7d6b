//go:build tools

// Package deps pins the modules that ward's packages are built on, so that
// go.mod and go.sum stay complete while those packages are written. The tools
// build tag keeps it out of every build; go mod tidy still reads it.
package deps

import (
	_ "github.com/c2sp/wycheproof"
	_ "github.com/casbin/casbin/v2"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	_ "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	_ "github.com/hashicorp/vault/api"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/pgproto3"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/miekg/pkcs11"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/spf13/cobra"
	_ "github.com/spiffe/go-spiffe/v2/workloadapi"
	_ "github.com/tink-crypto/tink-go/v2/aead"
	_ "github.com/tink-crypto/tink-go/v2/daead"
	_ "github.com/tink-crypto/tink-go/v2/keyset"
	_ "google.golang.org/grpc"
	_ "google.golang.org/grpc/xds"
	_ "gopkg.in/yaml.v3"
	_ "modernc.org/sqlite"
)
