# ward build and test entry points. `make run` needs only Go; `make test`
# installs the system packages its tests start (PostgreSQL, SoftHSM2, openssl,
# curl) with apt-get when they are missing.

GO        ?= go
BIN       := bin/ward
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X ward.dev/ward/internal/version.Version=$(VERSION)
DATA_DIR  ?= ./ward-data
BENCHTIME ?= 2s

.PHONY: build run test test-deps test-vault bench lint clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ward

run: build
	./$(BIN) serve --dev --data-dir $(DATA_DIR)

test-deps:
	@bash test/scripts/install-deps.sh

# Packages whose tests exercise shared state from many goroutines; they run
# a second time under the race detector.
RACE_PKGS := ./authz/... ./broker/lease/... ./broker/server/... ./internal/store/... ./crypto/keyset/...

# Every test, unit and end to end. The end-to-end tests in test/ build the
# binary themselves and start real servers in temporary directories.
test: test-deps build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...
	$(GO) test -count=1 -race -timeout 10m $(RACE_PKGS)

# The Vault suites run against the in-process stand-in in make test; here
# they run again against a real Vault or OpenBao dev server as well.
test-vault: test-deps
	@test -n "$$VAULT_ADDR" -a -n "$$VAULT_TOKEN" || { echo "test-vault: set VAULT_ADDR and VAULT_TOKEN (a dev server: vault server -dev)"; exit 2; }
	$(GO) test -count=1 -v -run . ./broker/vault/... ./crypto/kek/vaulttransit/...

bench: build
	@bash test/scripts/install-deps.sh --bench
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -timeout 30m ./...

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }

clean:
	rm -rf bin
