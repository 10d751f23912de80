package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/bombwatch/bombwatch/actions"
	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/input"
	"github.com/bombwatch/bombwatch/internal/safefile"
	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/pipeline"
	"github.com/bombwatch/bombwatch/state"
)

func runReplay(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("replay", stderr, "[-c FILE] [--format F] [--db FILE [--reset]] [--from-start] [--json] [--act] LOG...")
	cfgPath := fs.String("c", "", "config `file` (default: the built-in config)")
	format := fs.String("format", "auto", "log `format`: auto, postfix, sendmail, qmail or journald")
	dbPath := fs.String("db", "", "SQLite state `file`; without it the state is in memory")
	asJSON := fs.Bool("json", false, "print detections as JSON lines")
	act := fs.Bool("act", false, "execute script, firewall and map actions instead of reporting them")
	fromStart := fs.Bool("from-start", false, "read every log from its start; refused when --db already holds lines of it (see --reset)")
	reset := fs.Bool("reset", false, "with --db: start that state afresh, forgetting everything it holds")
	verbose := fs.Bool("v", false, "log actions and progress on stderr")
	logs, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := checkLogs(logs, *format); err != nil {
		return err
	}
	if *reset && *dbPath == "" {
		return usagef("--reset starts a --db afresh: give one")
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, *verbose)
	limitMemory(cfg)

	var store state.Store
	if *dbPath != "" {
		// --db is a path, sqlite:PATH, …: state.Open. A SQLite file is
		// locked against a daemon on it, and --reset removes it.
		if scheme, path := state.Scheme(*dbPath); scheme == "sqlite" {
			lock, err := safefile.LockState(path)
			if err != nil {
				return err
			}
			defer lock.Unlock()
			if *reset {
				for _, f := range []string{path, path + "-wal", path + "-shm"} {
					if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
						return fmt.Errorf("--reset: %w", err)
					}
				}
			}
		} else if *reset {
			return usagef("--reset removes a SQLite file; %q is not one", *dbPath)
		}
		db, err := state.Open(*dbPath, state.OpenOptions{Host: cfg.Host})
		if err != nil {
			return err
		}
		defer db.Close()
		store = db
	}
	// A failed action is an exit status and one line at the end; each
	// failure and retry is logged with -v.
	var failMu sync.Mutex
	var actionFailures int
	var firstFailure string
	execLog := logger
	if !*verbose {
		execLog = slog.New(slog.DiscardHandler)
	}
	exec := &actions.Executor{Log: execLog, Act: *act, Once: true, Failed: func(action string, err error) {
		failMu.Lock()
		defer failMu.Unlock()
		if actionFailures++; firstFailure == "" {
			firstFailure = action + ": " + firstLine(err.Error())
		}
	}}
	detections := 0
	p, err := config.NewPipeline(cfg, pipeline.Options{Host: cfg.HostName(),
		Store: store, Executor: exec, Logger: logger,
		OnDetection: func(d pipeline.Detection) {
			detections++
			printDetection(stdout, d, *asJSON)
		},
	})
	if err != nil {
		return err
	}

	if *act {
		// Firewall tables that a daemon would have made, made if missing.
		for _, a := range p.Actions() {
			if e, ok := a.(interface{ Ensure(context.Context) error }); ok && !actions.IsDryRun(a) {
				if err := e.Ensure(context.Background()); err != nil {
					logger.Error("action setup", "action", a.Name(), "err", err)
				}
			}
		}
	}
	positions := p.Positions()
	if *fromStart {
		// Lines the state counted already would be counted twice, and
		// blocks they ended would be in force again.
		for _, name := range logs {
			abs, _ := filepath.Abs(name)
			if pos, ok := positions[abs]; ok {
				return usagef("--from-start: %s already holds %s up to line %d; reading it again would count those lines twice. Add --reset to start %s afresh, or leave out --from-start to go on from there",
					*dbPath, name, pos.Line, *dbPath)
			}
		}
		positions = nil
	}
	opts := input.Options{Location: location(cfg), Positions: positions, Stats: store != nil}
	specs := make([]input.Spec, len(logs))
	for i, name := range logs {
		specs[i] = input.Spec{Path: name, Format: *format}
	}
	// The files of one log (mail.log.1, mail.log) are one source: one
	// parser reads across them, as the daemon's does across a rotation.
	srcs, errs := input.OpenSources(specs, opts)
	for _, err := range errs {
		// One bad log does not stop the others; the exit status says it.
		fmt.Fprintf(stderr, "bombwatch replay: %v\n", err)
	}
	failed := len(errs)
	merged := input.NewMerger(srcs)
	defer merged.Close()

	start := time.Now()
	stopProgress := progress(stderr, srcs, start)
	err = p.Process(merged)
	stopProgress()
	exec.Wait()
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	for _, s := range srcs {
		if s.Err() != nil {
			fmt.Fprintf(stderr, "bombwatch replay: %v\n", s.Err())
			failed++
		}
	}
	summarize(stderr, srcs, p, elapsed)
	if actionFailures > 0 {
		fmt.Fprintf(stderr, "bombwatch replay: %d actions failed, the first %s (-v shows each)\n", actionFailures, firstFailure)
		failed++
	}
	if failed > 0 {
		return reported{exitFailure}
	}
	return nil
}

// progress shows the lines read on a terminal, every half second, and
// nothing when stderr is not one (cron, a pipe).
func progress(w io.Writer, srcs []*input.Source, start time.Time) func() {
	f, ok := w.(*os.File)
	if !ok {
		return func() {}
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(f, "\r\033[K")
				return
			case <-tick.C:
				var n int64
				for _, s := range srcs {
					n += s.LinesRead()
				}
				secs := time.Since(start).Seconds()
				fmt.Fprintf(f, "\r\033[K%d lines read, %.0f lines/s", n, float64(n)/secs)
			}
		}
	}()
	return func() { close(done); <-finished }
}

// location is the zone of stamps without one: the config's, else the
// machine's, as syslog writes local time.
func location(cfg *config.Config) *time.Location {
	if cfg.Location != nil {
		return cfg.Location
	}
	return time.Local
}

func printDetection(w io.Writer, d pipeline.Detection, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(d)
		w.Write(append(b, '\n'))
		return
	}
	line := fmt.Sprintf("%s %-7s %s %s=%s value=%s limit=%s window=%s",
		d.Time.Format(time.RFC3339), d.Event, d.Rule, d.KeyType, safeText(d.Key),
		actions.FormatNumber(d.Value), actions.FormatNumber(d.Limit), d.Window)
	if d.Until != nil && d.Event == "block" {
		line += " until=" + d.Until.Format(time.RFC3339)
	}
	if d.Reason != "" {
		line += " reason=" + d.Reason
	}
	if d.Event == "block" {
		line += fmt.Sprintf(" actions=%v executed=%v", d.Actions, d.Executed)
		if d.File != "" {
			line += fmt.Sprintf(" at=%s:%d", safeText(d.File), d.Line)
		}
	}
	fmt.Fprintln(w, line)
}

func summarize(w io.Writer, srcs []*input.Source, p *pipeline.Pipeline, elapsed time.Duration) {
	var lines, recognised, skipped int64
	for _, s := range srcs {
		lines += s.Stats.Lines
		recognised += s.Stats.Recognised
		skipped += s.Stats.Skipped
		resumed := ""
		if s.Stats.Resumed {
			resumed = ", resumed at its saved position"
		}
		fmt.Fprintf(w, "%s: %s, %d lines, %d recognised, %d skipped%s\n",
			safeText(s.Name), orNone(s.Format), s.Stats.Lines, s.Stats.Recognised, s.Stats.Skipped, resumed)
	}
	st := p.Stats
	fmt.Fprintf(w, "events: %s; %d ignored\n", kindCounts(st.Events), st.Ignored)
	active := len(p.Active())
	fmt.Fprintf(w, "blocks: %d started, %d lifted, %d in force at the end of the logs\n", st.Blocks, st.Unblocks, active)
	rate := float64(lines) / max(elapsed.Seconds(), 1e-9)
	fmt.Fprintf(w, "%d lines in %s (%.0f lines/s)\n", lines, elapsed.Round(time.Millisecond), rate)
}

func kindCounts(counts [8]int64) string {
	out := ""
	for _, k := range parsers.Kinds() {
		if out != "" {
			out += ", "
		}
		out += fmt.Sprintf("%s %d", k, counts[k])
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "(no lines)"
	}
	return s
}
