# broker — make targets. `make` alone lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO      ?= go
TOOL    := $(GO) tool -modfile=tools/go.mod

.PHONY: help build run test test-short bench check fmt loadtest loadtest-expiry loadtest-faults fleet loadtest-ingest fuzz clean

help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build bin/broker (static, version stamped).
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/entrabroker/broker/internal/version.Version=$(VERSION)" -o bin/broker ./cmd/broker

run: build ## Run `broker demo`: the built-in emulator and the broker, no Azure account needed.
	./bin/broker demo

# SKIPPED collects one line per test skipped because a tool (promtool,
# prometheus) is missing; the test targets print it after the run and keep
# go test's exit status.
SKIPPED := bin/skipped-tests.txt
define report_skipped
	if [ -s $(SKIPPED) ]; then \
		echo; echo "NOTICE: these tests were SKIPPED because a tool is missing (.ci/run installs them):"; \
		sed 's/^/  /' $(SKIPPED); \
	fi
endef

test: ## Run every test with the race detector; name every test skipped for a missing tool.
	@mkdir -p bin; rm -f $(SKIPPED)
	@status=0; BROKER_SKIPPED_FILE=$(CURDIR)/$(SKIPPED) $(GO) test -race -count=1 ./... || status=$$?; \
	$(report_skipped); exit $$status

test-short: ## Run the tests without the race detector (faster).
	@mkdir -p bin; rm -f $(SKIPPED)
	@status=0; BROKER_SKIPPED_FILE=$(CURDIR)/$(SKIPPED) $(GO) test -count=1 ./... || status=$$?; \
	$(report_skipped); exit $$status

bench: ## Run the benchmarks (ns/op, allocs/op) beside their baselines.
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./internal/cache ./internal/httpapi ./internal/proxy ./cmd/broker

check: ## gofmt, go vet, golangci-lint and a go mod tidy diff.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(TOOL) golangci-lint run ./...
	$(GO) mod tidy -diff

fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go')

# LOADTEST_FLAGS are added to `loadtest compare`, e.g. LOADTEST_FLAGS='-baseline /tmp/old-broker -rounds 5'.
LOADTEST_FLAGS ?=

loadtest: build ## Broker vs a constant handler, a minimal Go proxy and nginx under wrk (≤ 10 min; needs wrk, nginx).
	$(GO) build -o bin/loadtest ./bench/cmd/loadtest
	./bin/loadtest compare -broker bin/broker $(LOADTEST_FLAGS)

loadtest-expiry: build ## 5 minutes of /token load across 2-minute token refreshes (about 6 min).
	$(GO) build -o bin/loadtest ./bench/cmd/loadtest
	./bin/loadtest expiry -broker bin/broker

loadtest-faults: build ## /token load through a scripted Entra outage: 503s, 429, drops, slow (5 to 6.5 min).
	$(GO) build -o bin/loadtest ./bench/cmd/loadtest
	./bin/loadtest faults -broker bin/broker

FLEET_N ?= 20
FLEET_DURATION ?= 10m

fleet: build ## 20 brokers sharing one Redis beside 20 alone, 2-minute tokens, 10 min of load: Entra requests per scope (needs redis-server).
	$(GO) build -o bin/loadtest ./bench/cmd/loadtest
	./bin/loadtest fleet -broker bin/broker -n $(FLEET_N) -duration $(FLEET_DURATION)

loadtest-ingest: build ## Logs Ingestion: a 20 MB array through the broker vs split by the client, direct to the emulator (under a minute).
	$(GO) build -o bin/loadtest ./bench/cmd/loadtest
	./bin/loadtest ingest -broker bin/broker

FUZZTIME ?= 10s
FUZZPKGS ?= ./internal/httpapi ./internal/proxy ./internal/azure ./internal/emulator ./internal/emulator/loganalytics

fuzz: ## Run every fuzz target for FUZZTIME (10s) each.
	@set -e; for pkg in $(FUZZPKGS); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$t"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime=$(FUZZTIME) $$pkg; \
		done; \
	done

clean: ## Remove build output.
	rm -rf bin
