# The two commands a newcomer needs: `make run` and `make test`.
# Both prepare the machine first (scripts/setup.sh is safe to run again).

GO      ?= go
BIN     := bin/tani
PKGS    := ./...

.PHONY: run test setup build vet bench bench-journal bench-ratio clean fabric-up fabric-down failover-test

## run: set up if needed, then start every module with embedded NATS and demo data
run: setup build
	./$(BIN) up -demo -webhooks.development -log.format=text

## test: set up if needed, vet, then the whole suite (real Postgres, in-process NATS, and a real
## Fabric network brought up once for the tests against real peers; see scripts/test.sh)
test: setup
	$(GO) vet $(PKGS)
	GO=$(GO) bash scripts/test.sh

## fabric-up: a real Fabric network on loopback in var/fabric-local (scripts/fabric-local.sh)
fabric-up:
	bash scripts/fabric-local.sh up

## fabric-down: stop it (data stays in var/fabric-local)
fabric-down:
	bash scripts/fabric-local.sh down

setup:
	@bash scripts/setup.sh

build:
	$(GO) build -o $(BIN) ./cmd/tani
	$(GO) build -o bin/tani-chaincode ./cmd/tani-chaincode

vet:
	$(GO) vet $(PKGS)

## bench: the benchmarks behind the figures in docs/
bench: setup
	$(GO) test -run '^$$' -bench . -benchtime 3x $(PKGS)

## bench-journal: the journal against Tessera's POSIX log and `tani verify` against reading its tables,
## paired run by run (docs/ledger-benchmarks.md); RUNS=3 by default. bench/journal is its own module,
## so Tessera is never linked into bin/tani.
RUNS ?= 3
bench-journal: setup
	cd bench/journal && $(GO) test -run '^$$' -bench JournalVsTessera -benchtime 1x -timeout 60m -runs $(RUNS)
	cd ledger && TANI_BENCH_AUDIT_ENTRIES=1000000 $(GO) test -run '^$$' -bench AuditVsRead -benchtime 1x -timeout 60m -runs $(RUNS)

## bench-ratio: the capture path (split and all-in-one) against Postgres's floor (one COPY of CSV, one binary COPY,
## INSERTs in 256-row transactions) on this machine, RUNS interleaved runs, min/median/max
## and ratios paired run by run (docs/performance.md); about 2 minutes a run
bench-ratio: setup build
	./$(BIN) load -ratio -runs=$(RUNS)

## failover-test: Postgres failover and read replica on this machine (creates and removes
## clusters on ports 5442/5443 with scripts/pg-failover.sh; needs root or sudo to postgres)
failover-test: setup
	TANI_PG_FAILOVER=1 $(GO) test -count=1 -v -timeout 20m -run 'TestFailover_|TestReadReplica_' ./internal/app/; \
	status=$$?; bash scripts/pg-failover.sh down; exit $$status

clean:
	rm -rf bin var
