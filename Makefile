# bombwatch — see README.md. `make demo` and `make test` are the two
# commands a new machine needs.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# How much each parser's fuzz target runs in `make test`: a count of
# inputs, about 5-10 s each here (FuzzSpoof's inputs are slower) — not a
# time, which races go1.26's fuzz coordinator at its deadline on a loaded
# machine ("context deadline exceeded" with no failing input;
# go.dev/issue/75804, fixed in Go 1.27). FUZZTIME=5m (make fuzz) sets one
# budget for all.
FUZZ_TARGETS := FuzzPostfix:200000x FuzzSendmail:200000x FuzzQmail:200000x FuzzJournald:100000x FuzzSpoof:20000x FuzzDecodeBinary:100000x FuzzSendmailFieldAt:200000x
FUZZTIME ?=

export CGO_ENABLED := 1

.PHONY: all build demo test vet fmt-check race fuzz-short fuzz soak flood bench compare samples clean man deb install

# make install: PREFIX for the program, man page and unit; DESTDIR to stage.
PREFIX     ?= /usr/local
DESTDIR    ?=
SYSCONFDIR ?= /etc
# The package's version: Debian wants a digit first.
DEB_VERSION ?= 0.0.0~git$(shell git log -1 --format=%cd --date=format:%Y%m%d%H%M%S 2>/dev/null || date +%Y%m%d%H%M%S).$(COMMIT)
DEB_ARCH    ?= $(shell $(GO) env GOARCH)

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
	@for tb in $(FUZZ_TARGETS); do \
		t=$${tb%%:*}; b=$(FUZZTIME); [ -n "$$b" ] || b=$${tb#*:}; \
		echo "fuzz $$t for $$b"; \
		$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $$b ./parsers || exit 1; \
	done

fuzz:
	$(MAKE) fuzz-short FUZZTIME=5m

# The fault harness at a large size: a log written while it is rotated
# five ways with the daemon running, stalled, stopped and killed, compared
# with one replay (make test runs it at 6000 lines a mode).
SOAK_LINES ?= 200000
SOAK_SEED  ?= 1
soak:
	BOMBWATCH_FAULT_LINES=$(SOAK_LINES) BOMBWATCH_FAULT_SEED=$(SOAK_SEED) \
		$(GO) test -count=1 -timeout 80m -run '^TestFaultHarness$$' -v ./cmd/bombwatch

# A flood of FLOOD_SENDERS messages each from a sender of its own through
# `bombwatch run`, with max_keys at its default (make test runs 100,000
# against a cap of 10,000): the keys held and the peak RSS stay within it.
FLOOD_SENDERS ?= 10000000
flood:
	BOMBWATCH_FLOOD_SENDERS=$(FLOOD_SENDERS) BOMBWATCH_FLOOD_MAX_KEYS=0 \
		$(GO) test -count=1 -timeout 30m -run '^TestRunFloodOfDistinctSendersStaysUnderMaxKeys$$' -v ./cmd/bombwatch

# The Go benchmarks of each stage, then the whole pipeline on generated
# logs of every format (bombwatch bench).
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	bin/bombwatch bench

# bombwatch against fail2ban-regex on the same generated 1M-line Postfix
# log, in one run: fail2ban is installed from Debian when missing.
COMPARE_LINES ?= 1000000
COMPARE_DIR   ?= /tmp/bombwatch-compare
F2B_REGEX     := NOQUEUE: reject: RCPT from \S+\[<HOST>\]
compare: build
	@command -v fail2ban-regex >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fail2ban; }
	@mkdir -p $(COMPARE_DIR)
	bin/bombwatch generate --format postfix --lines $(COMPARE_LINES) --seed 1 > $(COMPARE_DIR)/mail.log
	@rm -f $(COMPARE_DIR)/state.db*
	@set -e; \
	t0=$$(date +%s.%N); fail2ban-regex $(COMPARE_DIR)/mail.log '$(F2B_REGEX)' > $(COMPARE_DIR)/fail2ban.out; t1=$$(date +%s.%N); \
	bin/bombwatch replay --db $(COMPARE_DIR)/state.db $(COMPARE_DIR)/mail.log > /dev/null 2> $(COMPARE_DIR)/bombwatch.out; t2=$$(date +%s.%N); \
	grep -E '^Lines:' $(COMPARE_DIR)/fail2ban.out || true; \
	awk -v f=$$t0 -v g=$$t1 -v b=$$t2 -v n=$(COMPARE_LINES) 'BEGIN { \
		printf "fail2ban-regex:       %6.2f s  %10.0f lines/s\n", g-f, n/(g-f); \
		printf "bombwatch replay --db: %5.2f s  %10.0f lines/s\n", b-g, n/(b-g); \
		printf "bombwatch is %.0f times as fast\n", (g-f)/(b-g) }'

# Remakes samples/ with the generator; TestSamplesAreGenerated keeps these
# recipes and the files in step.
samples: build
	bin/bombwatch generate --format postfix  --lines 6000 --seed 1 --start 2026-11-20T08:00:00Z > samples/postfix.log
	bin/bombwatch generate --format sendmail --lines 5000 --seed 2 --start 2026-11-20T10:00:00Z > samples/sendmail.log
	bin/bombwatch generate --format qmail    --lines 4000 --seed 3 --start 2026-11-20T12:00:00Z > samples/qmail.log

clean:
	rm -rf bin

# The man page and the bash completion, made from the binary's own help and
# the README's Config section (internal/mangen).
man: build
	$(GO) run ./internal/mangen -bin bin/bombwatch -readme README.md -version $(VERSION) > bin/bombwatch.8
	gzip -9nf bin/bombwatch.8
	$(GO) run ./internal/mangen -bin bin/bombwatch -completion > bin/bombwatch.bash

# The Debian package, by nfpm (a Go tool dependency: go.mod's tool line).
deb: man
	VERSION=$(DEB_VERSION) ARCH=$(DEB_ARCH) $(GO) tool nfpm package -f packaging/nfpm.yaml -p deb -t bin/
	@ls bin/*.deb

# For those who build from source: the program in $(PREFIX)/sbin, the man
# page, completion and unit (its ExecStart pointed there), and the config
# — only where there is none.
install: man
	install -D -m 0755 bin/bombwatch $(DESTDIR)$(PREFIX)/sbin/bombwatch
	install -D -m 0644 bin/bombwatch.8.gz $(DESTDIR)$(PREFIX)/share/man/man8/bombwatch.8.gz
	install -D -m 0644 bin/bombwatch.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/bombwatch
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's|/usr/sbin/bombwatch|$(PREFIX)/sbin/bombwatch|' packaging/bombwatch.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/bombwatch.service
	install -d $(DESTDIR)$(SYSCONFDIR)/bombwatch/conf.d
	[ -e $(DESTDIR)$(SYSCONFDIR)/bombwatch/bombwatch.yaml ] || install -m 0644 packaging/bombwatch.yaml $(DESTDIR)$(SYSCONFDIR)/bombwatch/bombwatch.yaml
