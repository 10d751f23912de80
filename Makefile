# bombwatch — see README.md. `make demo` and `make test` are the two
# commands a new machine needs.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# How long each parser's fuzz target runs in `make test`; `make fuzz` runs longer.
FUZZTIME ?= 10s
FUZZ_TARGETS := FuzzPostfix FuzzSendmail FuzzQmail FuzzJournald

export CGO_ENABLED := 1

.PHONY: all build demo test vet fmt-check race fuzz-short fuzz bench samples clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/bombwatch ./cmd/bombwatch

# Replays the samples with the built-in config: the detections on stdout,
# a summary on stderr.
demo: build
	bin/bombwatch replay samples/postfix.log samples/sendmail.log samples/qmail.log

test: fmt-check vet race fuzz-short

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

race:
	$(GO) test -race -count=1 ./...

fuzz-short:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./parsers || exit 1; \
	done

fuzz:
	$(MAKE) fuzz-short FUZZTIME=5m

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Remakes samples/ with the generator; TestSamplesAreGenerated keeps these
# recipes and the files in step.
samples: build
	bin/bombwatch generate --format postfix  --lines 6000 --seed 1 --start 2026-11-20T08:00:00Z > samples/postfix.log
	bin/bombwatch generate --format sendmail --lines 5000 --seed 2 --start 2026-11-20T10:00:00Z > samples/sendmail.log
	bin/bombwatch generate --format qmail    --lines 4000 --seed 3 --start 2026-11-20T12:00:00Z > samples/qmail.log

clean:
	rm -rf bin
