# tinymod's build. `make test` and `make demo` work on a fresh clone: they build
# what they need, the control-plane binaries included (cached outside the clone).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go

.PHONY: all build generate manifests helm tools controlplane browser ui web-test test fuzz vet fmt-check cross bench chaos load scale demo clean

all: build

## build: the tinymod binary, into bin/
build:
	$(GO) build -o bin/tinymod ./cmd/tinymod

## generate: deepcopy code and CRD manifests from api/v1alpha1, gRPC code from api/proto
generate: tools
	$(GO) tool controller-gen object paths=./api/... crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(GO) generate ./internal/transport/

## manifests: the chart's CRDs and config/deploy (the kustomize base), rendered from their sources
manifests: generate
	hack/render-manifests.sh

## helm: the pinned helm, built from the Go module proxy (cached; skipped when present)
helm:
	@hack/helm/build.sh >/dev/null

## tools: protoc, from Debian's protobuf-compiler, when missing (the Go plugins are pinned Go tools)
tools:
	@command -v protoc >/dev/null || { echo "installing protobuf-compiler..."; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq protobuf-compiler >/dev/null; }

## browser: Debian's chromium, for the page's browser tests, when missing
browser:
	@command -v chromium >/dev/null || { echo "installing chromium..."; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

## ui: build the page of tinymod ui from web/ into internal/ui/dist (committed, so that go install needs no npm)
ui:
	cd web && npm ci --no-audit --no-fund && npm run build

## web-test: the page's unit tests
web-test:
	cd web && npm ci --no-audit --no-fund && npm test

## controlplane: kube-apiserver, kubectl and etcd built from source (cached; skipped when present)
controlplane:
	@hack/controlplane/build.sh >/dev/null

## vet: go vet
vet:
	$(GO) vet ./...

## fmt-check: fail when gofmt would change a file
fmt-check:
	@unformatted=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi

## cross: what a module author builds against (the SDK, the test package, the CLI, the binary) builds and
## vets on macOS and Windows; the control plane and the suites that start it stay Linux-only
CROSS_TARGETS := darwin/arm64 windows/amd64
CROSS_BUILD := ./module/... ./pkg/... ./api/... ./compat/... ./components/... ./examples/... ./cli/... ./cmd/...
CROSS_VET := ./module/... ./pkg/... ./api/... ./compat/... ./components/... ./examples/...
cross:
	@for t in $(CROSS_TARGETS); do \
		echo "cross $$t"; \
		GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build $(CROSS_BUILD) || exit 1; \
		GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) vet $(CROSS_VET) || exit 1; \
	done

## test: the whole suite, on a real API server, with the race detector; never from the test cache,
## since some tests build and run the binary, which the cache cannot see
test: tools controlplane helm browser vet fmt-check cross web-test
	$(GO) test -race -count=1 -timeout 20m ./...
	@$(MAKE) --no-print-directory fuzz

## fuzz: every fuzz target for a few seconds' worth of inputs (FUZZTIME=Nx overrides the count);
## a crash fails and is kept in testdata/fuzz. Counts, not durations: a duration races Go 1.26's
## fuzz coordinator at its deadline and can fail with "context deadline exceeded" and no crasher
## (golang/go#75804, fixed in Go 1.27).
export FUZZTIME
FUZZ_TARGETS := FuzzCompileEval:./internal/mapping:60000x FuzzSettingsDecode:./internal/scheduler:5000x \
	FuzzMessageData:./internal/scheduler:5000x FuzzRequestDecode:./internal/transport:5000x
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		name=$${t%%:*}; rest=$${t#*:}; pkg=$${rest%%:*}; count=$${FUZZTIME:-$${rest##*:}}; \
		echo "fuzz $$name ($$count)"; \
		$(GO) test -run XXX -fuzz "^$$name$$" -fuzztime $$count $$pkg || exit 1; \
	done

## bench: every benchmark beside its anchor, then one table of the figures (about 20 minutes; not part of test)
bench: controlplane
	$(GO) run ./test/bench/report

## chaos: the chaos suite's long profile, at the default lease durations (about 15 minutes)
chaos: controlplane
	TINYMOD_CHAOS=long $(GO) test -race -count=1 -run TestChaos -v -timeout 60m ./test/e2e/chaos/

## load: 10k messages/s across two modules for 60 s, beside plain unary gRPC and NATS request-reply; RSS slope per replica
load: controlplane
	$(GO) run ./test/bench/load -rate 10000 -duration 60s

## scale: 1000 TinyNodes on 3 replicas; time to run everywhere, steady-state API writes, memory per node
scale: controlplane
	$(GO) run ./test/bench/scale -nodes 1000 -steady 5m

## demo: three replicas and a sample flow on a local control plane, with a live view (Ctrl-C stops)
demo: controlplane build
	bin/tinymod dev --dir .tinymod/dev --kill-leader-every 30s

clean:
	rm -rf bin/
