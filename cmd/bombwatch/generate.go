package main

import (
	"bufio"
	"io"
	"time"

	"github.com/bombwatch/bombwatch/internal/loggen"
)

func runGenerate(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("generate", stderr, "[--format F] [--site small|large] [--lines N] [--seed S] [--start TIME]")
	format := fs.String("format", "postfix", "log `format`: postfix, sendmail or qmail")
	site := fs.String("site", "small", "the ordinary `traffic`: small (a message every 2 s) or large (a relay at 100 messages a second, after three days of its big senders' history)")
	lines := fs.Int("lines", 10000, "about how many `lines` to write")
	seed := fs.Uint64("seed", 1, "random `seed`: the same seed gives the same log")
	start := fs.String("start", "2026-11-20T08:00:00Z", "RFC 3339 `time` of the first line (on a large site, of the day after its three days of history)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected arguments %q", rest)
	}
	t, err := time.Parse(time.RFC3339, *start)
	if err != nil {
		return usagef("--start: %v", err)
	}
	w := bufio.NewWriterSize(stdout, 256<<10)
	if _, err := loggen.Write(w, loggen.Options{Format: *format, Site: *site, Lines: *lines, Seed: *seed, Start: t}); err != nil {
		return usageError{err}
	}
	return w.Flush()
}
