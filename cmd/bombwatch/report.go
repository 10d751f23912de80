package main

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/input"
	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/report"
	"github.com/bombwatch/bombwatch/state"
	"github.com/bombwatch/bombwatch/window"
)

// parseWhen reads --since and --until: a duration back from end, an RFC
// 3339 time, or a date.
func parseWhen(s string, end time.Time) (time.Time, error) {
	if d, err := config.ParseDuration(s); err == nil {
		return end.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a duration (24h, 7d), a time (RFC 3339) or a date", s)
}

// openState opens the state a read-only command reads: --db, or the
// config's (a path, sqlite:PATH, …: state.Open).
func openState(cfg *config.Config, dbPath string) (state.Store, error) {
	return openStateFor(cfg, dbPath, false)
}

// openStateFor is openState; allHosts reads every host's counts of a
// state several hosts share.
func openStateFor(cfg *config.Config, dbPath string, allHosts bool) (state.Store, error) {
	if dbPath == "" {
		dbPath = cfg.State
	}
	return state.Open(dbPath, state.OpenOptions{ReadOnly: true, Host: cfg.Host, AllHosts: allHosts})
}

func runReport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("report", stderr, "[-c FILE] [--db FILE] [--since T] [--until T] [--format text|json|csv|html] [--top N] [--by M] [-o FILE] [--table T] [--what-if 'KEY LIMIT/PER'] [--all-hosts]")
	cfgPath := fs.String("c", "", "config `file` (default: the built-in config)")
	dbPath := fs.String("db", "", "state database `file` (default: the config's state)")
	since := fs.String("since", "24h", "start: a `duration` back from --until, a time or a date")
	until := fs.String("until", "", "end: a time or a date (default: the newest event in the state)")
	format := fs.String("format", "text", "text, json, csv or html")
	top := fs.Int("top", 10, "how many keys of each kind to rank")
	by := fs.String("by", "messages", "rank the top keys by messages, bytes or recipients")
	out := fs.String("o", "", "write to `file` instead of standard output")
	table := fs.String("table", "blocks", "with csv: the table ("+strings.Join(report.Tables, ", ")+")")
	whatIf := fs.String("what-if", "", "also try a candidate rule on the period, such as 'sender 20/1m'")
	allHosts := fs.Bool("all-hosts", false, "a state several hosts share (PostgreSQL): count every host's traffic together, not this host's")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected arguments %q", rest)
	}
	if *top < 0 {
		return usagef("--top %d: must be 0 or more", *top)
	}
	if !slicesContains([]string{"text", "json", "csv", "html"}, *format) {
		return usagef("--format %q is not text, json, csv or html", *format)
	}
	if !slicesContains([]string{"messages", "bytes", "recipients"}, *by) {
		return usagef("--by %q is not messages, bytes or recipients", *by)
	}
	o := report.Options{Top: *top, By: *by}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	// Networks are summed as the rules see them: the last rule on client
	// networks says the prefix — the admin's own, which come after the
	// built-in botnet rule's /24 and /48.
	for _, r := range cfg.Rules {
		if (r.Key == "client_net" || r.Of == "client_net") && r.Prefix != nil {
			o.Net4, o.Net6 = r.Prefix.IPv4, r.Prefix.IPv6
		}
	}
	if *whatIf != "" {
		if o.WhatIf, err = report.ParseWhatIf(*whatIf, config.ParseDuration); err != nil {
			return usageError{err}
		}
	}
	store, err := openStateFor(cfg, *dbPath, *allHosts)
	if err != nil {
		return err
	}
	defer store.Close()
	// A shared state's report says whose traffic it counts.
	var hosts []string
	if shared, ok := store.(state.Shared); ok {
		hosts = []string{shared.Host()}
		if *allHosts {
			others, err := shared.Hosts()
			if err != nil {
				return err
			}
			hosts = slices.Sorted(slices.Values(append(hosts, others...)))
		}
	} else if *allHosts {
		return usagef("--all-hosts: the state %s is not shared by several hosts (a PostgreSQL state is)", cmp.Or(*dbPath, cfg.State))
	}
	snap, err := store.Load()
	if err != nil {
		return err
	}
	end := snap.Clock
	if end.IsZero() {
		end = time.Now()
	}
	end = end.Truncate(time.Minute).Add(time.Minute) // the newest event's minute, whole
	if *until != "" {
		if end, err = parseWhen(*until, end); err != nil {
			return usageError{err}
		}
	}
	if o.Since, err = parseWhen(*since, end); err != nil {
		return usageError{err}
	}
	o.Until = end
	// An empty report would say nothing happened: say what is wrong.
	if !o.Since.Before(o.Until) {
		return usagef("--since %s is not before --until %s", o.Since.Format(time.RFC3339), o.Until.Format(time.RFC3339))
	}
	if now := time.Now(); o.Since.After(now) {
		return usagef("--since %s is in the future", o.Since.Format(time.RFC3339))
	}
	r, err := report.Build(store, o)
	if err != nil {
		return err
	}
	r.Hosts = hosts
	w := stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriter(w)
	switch *format {
	case "json":
		err = r.JSON(bw)
	case "csv":
		err = r.CSV(bw, *table)
		if err != nil && strings.HasPrefix(err.Error(), "no table") {
			return usageError{err}
		}
	case "html":
		err = r.HTML(bw)
	default:
		err = r.Text(bw)
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

func slicesContains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// runExplain says why a key was blocked: the rule, its arithmetic, and the
// events it counted, as kept with the block, with their log lines when the
// log still holds them.
func runExplain(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("explain", stderr, "KEY [-c FILE] [--db FILE]")
	cfgPath := fs.String("c", "", "config `file` (default: the built-in config)")
	dbPath := fs.String("db", "", "state database `file` (default: the config's state)")
	tz := fs.String("timezone", "", "time `zone` of the log's stamps without one (default: the config's, else the machine's)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("explain takes one KEY")
	}
	key := rest[0]
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	loc := location(cfg)
	if *tz != "" {
		if loc, err = time.LoadLocation(*tz); err != nil {
			return usagef("unknown --timezone %q", *tz)
		}
	}
	store, err := openState(cfg, *dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	blocks, err := store.Blocks(false, time.Time{})
	if err != nil {
		return err
	}
	found := 0
	lines := logLines{loc: loc}
	for _, b := range blocks {
		if b.Key != key {
			continue
		}
		found++
		rule := ruleNamed(cfg, b.Rule)
		fmt.Fprintf(stdout, "Block %d by rule %s: %s %s\n", b.ID, b.Rule, b.KeyType, safeText(b.Key))
		at := ""
		if b.File != "" {
			at = fmt.Sprintf(" (%s:%d)", safeText(b.File), b.Line)
		}
		burst := rule != nil && rule.Measure == "burst"
		if burst {
			fmt.Fprintf(stdout, "  burst score %s > %s at %s%s\n", num(b.Value), num(b.Limit), b.Since.UTC().Format(time.RFC3339Nano), at)
		} else {
			fmt.Fprintf(stdout, "  %s > %s within %s at %s%s\n", num(b.Value), num(b.Limit), b.Window, b.Since.UTC().Format(time.RFC3339Nano), at)
			explainLimit(stdout, rule, &b)
		}
		switch {
		case !b.Ended.IsZero():
			fmt.Fprintf(stdout, "  ended %s (%s)\n", b.Ended.UTC().Format(time.RFC3339), b.EndReason)
		case !b.Until.IsZero():
			fmt.Fprintf(stdout, "  in force until %s\n", b.Until.UTC().Format(time.RFC3339))
		default:
			fmt.Fprintln(stdout, "  in force, with no end by time")
		}
		if len(b.Evidence) == 0 {
			fmt.Fprintln(stdout, "  no evidence kept: a ban by hand, or a block made before bombwatch kept what its rule counted")
			continue
		}
		if burst {
			explainBurst(stdout, rule, &b, &lines)
			continue
		}
		n := int64(0)
		for _, ev := range b.Evidence {
			n += max(ev.Amount, 1)
		}
		fmt.Fprintf(stdout, "  what the rule counted, kept with the block (%d entries):\n", len(b.Evidence))
		res := window.Resolution(b.Window)
		for _, ev := range b.Evidence {
			fmt.Fprintf(stdout, "    %s", ev.Time.UTC().Format(time.RFC3339Nano))
			if ev.Amount > 1 {
				fmt.Fprintf(stdout, " +%d (the events of one %s interval, from the first)", ev.Amount, res)
			}
			fmt.Fprintf(stdout, "  %s\n", lines.show(ev, res))
		}
	}
	if found == 0 {
		return fmt.Errorf("no block of %q in the state database", key)
	}
	return nil
}

// num prints a measure: a count as it is, a score to 4 decimals.
func num(v float64) string { return strconv.FormatFloat(math.Round(v*1e4)/1e4, 'f', -1, 64) }

// ruleNamed is the config's rule of that name, nil when there is none.
func ruleNamed(cfg *config.Config, name string) *config.Rule {
	for i := range cfg.Rules {
		if cfg.Rules[i].Name == name {
			return &cfg.Rules[i]
		}
	}
	return nil
}

// explainLimit says where a limit raised by adapt came from.
func explainLimit(w io.Writer, rule *config.Rule, b *state.Block) {
	if rule == nil || rule.Adapt == nil {
		return
	}
	base := rule.Limit
	for _, win := range rule.Windows {
		if time.Duration(win.Per) == b.Window {
			base = win.Limit
		}
	}
	if base <= 0 || b.Limit <= float64(base) {
		fmt.Fprintf(w, "  the rule's own limit: this key had no history over %s that raised it (adapt)\n", config.FormatDuration(time.Duration(rule.Adapt.History)))
		return
	}
	a := rule.Adapt
	fmt.Fprintf(w, "  the rule's limit is %d; adapt raised this key's to %s: %s times the most it reached in %s, unblocked, over the last %s",
		base, num(b.Limit), num(a.Factor), b.Window, config.FormatDuration(time.Duration(a.History)))
	if b.Limit >= a.Max*float64(base) {
		fmt.Fprintf(w, ", capped at %s times the limit\n", num(a.Max))
	} else {
		fmt.Fprintf(w, " (%s)\n", num(math.Round(b.Limit/a.Factor*100)/100))
	}
}

// explainBurst shows FML's arithmetic: the score at the crossing event is
// Σ 1/max(|t−tᵢ|, ε) over the key's earlier events, over log times (ε 1 s)
// or over their Date: headers (ε 3 s).
func explainBurst(w io.Writer, rule *config.Rule, b *state.Block, lines *logLines) {
	evs := b.Evidence
	last := evs[len(evs)-1]
	overDates := false
	var et, ed float64
	for _, ev := range evs[:len(evs)-1] {
		et += 1 / max(last.Time.Sub(ev.Time).Seconds(), window.BurstEpsilon.Seconds())
		if !ev.Date.IsZero() && !last.Date.IsZero() {
			ed += 1 / max(math.Abs(last.Date.Sub(ev.Date).Seconds()), window.BurstDateEpsilon.Seconds())
		}
	}
	if math.Abs(ed-b.Value) < math.Abs(et-b.Value) {
		overDates = true
	}
	what, eps := "their log times", window.BurstEpsilon
	if overDates {
		what, eps = "their Date: headers", window.BurstDateEpsilon
	}
	fmt.Fprintf(w, "  FML's burst score: at each message, the sum over the key's earlier messages within %s of 1/max(|t − tᵢ|, %s), over %s\n",
		config.FormatDuration(time.Duration(rule.Expire)), eps, what)
	fmt.Fprintf(w, "  soft %s, hard %s; at the crossing message (%s):\n", num(rule.Soft), num(rule.Hard), last.Time.UTC().Format(time.RFC3339Nano))
	sum := 0.0
	for _, ev := range evs[:len(evs)-1] {
		gap := last.Time.Sub(ev.Time)
		if overDates {
			gap = last.Date.Sub(ev.Date)
		}
		term := 1 / max(math.Abs(gap.Seconds()), eps.Seconds())
		sum += term
		fmt.Fprintf(w, "    + 1/max(%s, %s) = %.4f  %s\n", gap.Abs().Round(time.Millisecond), eps, term, lines.show(ev, 0))
	}
	fmt.Fprintf(w, "    = %.4f", sum)
	if d := b.Value - sum; d > 0.0005 {
		fmt.Fprintf(w, ", and %.4f from older messages not kept", d)
	}
	fmt.Fprintf(w, "  (the score: %s)\n", num(b.Value))
	fmt.Fprintf(w, "    the crossing message: %s\n", lines.show(last, 0))
}

// logLines reads the lines evidence names from the logs, once per file.
type logLines struct {
	loc   *time.Location
	files map[string]map[int64]string // file → line → text
}

// show is where ev was logged, and the line's text when the file still
// holds, at that line, an event of that time (within res): a rotated log
// holds other lines under the same name.
func (l *logLines) show(ev state.Evidence, res time.Duration) string {
	if ev.File == "" {
		return "(where it was logged was not kept)"
	}
	where := fmt.Sprintf("%s:%d", safeText(ev.File), ev.Line)
	if l.files == nil {
		l.files = map[string]map[int64]string{}
	}
	lines, ok := l.files[ev.File]
	if !ok {
		lines = l.read(ev.File)
		l.files[ev.File] = lines
	}
	text, ok := lines[ev.Line]
	if !ok {
		return where + " (the log no longer holds it)"
	}
	if !l.matches(text, ev, res) {
		return where + " (the log holds another line there now: rotated?)"
	}
	return where + ": " + report.Clean(text)
}

// read reads a log's lines whose events a block may name: all of them,
// kept by number. Evidence is read for the few blocks of one key, so a
// log read once is enough.
func (l *logLines) read(file string) map[int64]string {
	out := map[int64]string{}
	r, err := input.Open(file)
	if err != nil {
		return out
	}
	defer r.Close()
	for {
		line, err := r.Next()
		if err != nil {
			return out
		}
		out[r.Line()] = string(line)
	}
}

// matches reports whether text is a line logged at ev's time.
func (l *logLines) matches(text string, ev state.Evidence, res time.Duration) bool {
	ok := false
	for _, f := range parsers.Names() {
		format, _ := parsers.Lookup(f)
		p := format.New(parsers.Options{Location: l.loc, Reference: ev.Time})
		p.Parse([]byte(text), ev.Line, func(e *parsers.Event) {
			d := e.Time.Sub(ev.Time)
			ok = ok || d >= 0 && d < max(res, time.Millisecond) || d.Abs() < time.Millisecond
		})
		if ok {
			return true
		}
	}
	return false
}
