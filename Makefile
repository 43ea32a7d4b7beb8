# The two commands a newcomer needs: `make run` and `make test`.
# Both prepare the machine first (scripts/setup.sh is safe to run again).

GO      ?= go
BIN     := bin/tani
PKGS    := ./...

.PHONY: run test setup build vet bench clean

## run: set up if needed, then start every module with embedded NATS and demo data
run: setup build
	./$(BIN) up -demo -log.format=text

## test: set up if needed, vet, then the whole suite (real Postgres, in-process NATS)
test: setup
	$(GO) vet $(PKGS)
	$(GO) test -timeout 30m $(PKGS)

setup:
	@bash scripts/setup.sh

build:
	$(GO) build -o $(BIN) ./cmd/tani

vet:
	$(GO) vet $(PKGS)

## bench: the benchmarks behind the figures in docs/
bench: setup
	$(GO) test -run '^$$' -bench . -benchtime 3x $(PKGS)

clean:
	rm -rf bin var
