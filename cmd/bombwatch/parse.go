package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/bombwatch/bombwatch/input"
	"github.com/bombwatch/bombwatch/parsers"
)

// fileStats is what `parse --stats` reports of one log.
type fileStats struct {
	File         string           `json:"file"`
	Format       string           `json:"format"`
	Lines        int64            `json:"lines"`
	Recognised   int64            `json:"recognised"`
	Skipped      int64            `json:"skipped"`
	Events       map[string]int64 `json:"events"`
	Unrecognised []shapeCount     `json:"unrecognised"`
}

type shapeCount struct {
	Shape string `json:"shape"`
	Count int64  `json:"count"`
}

// maxShapes bounds the shapes remembered per file, so that a log of
// garbage cannot grow the table without end.
const maxShapes = 10000

func runParse(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("parse", stderr, "[--format F] [--json] [--stats] LOG...")
	format := fs.String("format", "auto", "log `format`: auto, postfix, sendmail, qmail or journald")
	asJSON := fs.Bool("json", false, "print JSON: one event, or one file's stats, per line")
	stats := fs.Bool("stats", false, "print per file: lines, recognised, events by kind, unrecognised shapes")
	top := fs.Int("top", 10, "with --stats: how many unrecognised shapes to show")
	tz := fs.String("timezone", "", "time `zone` of stamps without one (default: the machine's)")
	logs, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *top < 0 {
		return usagef("--top %d: must be 0 or more", *top)
	}
	if err := checkLogs(logs, *format); err != nil {
		return err
	}
	loc := time.Local
	if *tz != "" {
		if loc, err = time.LoadLocation(*tz); err != nil {
			return usagef("unknown --timezone %q", *tz)
		}
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	defer w.Flush()
	failed := false
	for _, name := range logs {
		if err := parseFile(w, name, *format, loc, *asJSON, *stats, *top); err != nil {
			w.Flush()
			fmt.Fprintf(stderr, "bombwatch parse: %v\n", err)
			failed = true
		}
	}
	if failed {
		return reported{exitFailure}
	}
	return nil
}

func parseFile(w *bufio.Writer, name, format string, loc *time.Location, asJSON, stats bool, top int) error {
	src, err := input.OpenSource(input.Spec{Path: name, Format: format}, input.Options{Location: loc})
	if err != nil {
		return err
	}
	defer src.Close()
	st := fileStats{File: name, Format: src.Format, Events: map[string]int64{}, Unrecognised: []shapeCount{}}
	shapes := map[string]int64{}
	var buf []byte
	emit := func(e *parsers.Event) {
		if e.Kind == parsers.SessionEnd {
			return // a tcpserver session's end: an event only joined with qmail-send's log (replay, run)
		}
		st.Events[e.Kind.String()]++
		if stats {
			return
		}
		if asJSON {
			buf = e.AppendJSON(buf[:0])
			w.Write(append(buf, '\n'))
			return
		}
		writeEventText(w, e)
	}
	err = src.EachLine(func(line []byte, lineNo int64, parser parsers.Parser) {
		st.Lines++
		if parser.Parse(line, lineNo, emit) {
			st.Recognised++
		} else if stats {
			s := parsers.Shape(line)
			if _, ok := shapes[s]; ok || len(shapes) < maxShapes {
				shapes[s]++
			}
		}
	})
	src.Finish(emit)
	st.Skipped = src.Stats.Skipped
	if stats {
		for s, n := range shapes {
			st.Unrecognised = append(st.Unrecognised, shapeCount{s, n})
		}
		slices.SortFunc(st.Unrecognised, func(a, b shapeCount) int {
			if a.Count != b.Count {
				return int(b.Count - a.Count)
			}
			return strings.Compare(a.Shape, b.Shape)
		})
		if len(st.Unrecognised) > top {
			st.Unrecognised = st.Unrecognised[:top]
		}
		writeStats(w, st, asJSON)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func writeEventText(w *bufio.Writer, e *parsers.Event) {
	fmt.Fprintf(w, "%s %s %s", e.Time.UTC().Format(time.RFC3339Nano), e.MTA, e.Kind)
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, " %s=%s", k, safeText(v))
		}
	}
	field("host", e.Host)
	field("queue_id", e.QueueID.String())
	if e.HasSender {
		s := e.Sender
		if s == "" {
			s = "<>"
		}
		field("sender", s)
	}
	if e.ClientIP.IsValid() {
		field("client_ip", e.ClientIP.String())
	}
	field("client_host", e.ClientHost)
	field("sasl_user", e.SASLUser)
	for _, n := range []struct {
		k string
		v int64
	}{{"uid", e.UID}, {"size", e.Size}, {"nrcpt", e.NRcpt}} {
		if n.v >= 0 {
			fmt.Fprintf(w, " %s=%d", n.k, n.v)
		}
	}
	field("reason", e.Reason)
	fmt.Fprintf(w, " line=%d\n", e.Line)
}

func writeStats(w *bufio.Writer, st fileStats, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(st)
		w.Write(append(b, '\n'))
		return
	}
	fmt.Fprintf(w, "%s: %s\n", safeText(st.File), orNone(st.Format))
	pct := 0.0
	if st.Lines > 0 {
		pct = 100 * float64(st.Recognised) / float64(st.Lines)
	}
	fmt.Fprintf(w, "  lines read      %d\n  recognised      %d (%.1f%%)\n  skipped (long)  %d\n", st.Lines, st.Recognised, pct, st.Skipped)
	fmt.Fprintln(w, "  events by kind")
	for _, k := range parsers.Kinds() {
		fmt.Fprintf(w, "    %-16s %d\n", k, st.Events[k.String()])
	}
	if len(st.Unrecognised) > 0 {
		fmt.Fprintln(w, "  unrecognised lines, most common shapes")
		for _, s := range st.Unrecognised {
			fmt.Fprintf(w, "    %7d  %s\n", s.Count, s.Shape)
		}
	}
}
