package main

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/bombwatch/bombwatch/actions"
	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/input"
	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/report"
	"github.com/bombwatch/bombwatch/sqlite"
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
// config's.
func openState(cfg *config.Config, dbPath string) (*sqlite.Store, error) {
	if dbPath == "" {
		dbPath = cfg.State
	}
	return sqlite.OpenReadOnly(dbPath)
}

func runReport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("report", stderr, "[-c FILE] [--db FILE] [--since T] [--until T] [--format text|json|csv|html] [--top N] [--by M] [-o FILE] [--table T] [--what-if 'KEY LIMIT/PER']")
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
	// Networks are summed as the rules see them: the first rule on
	// client networks says the prefix.
	for _, r := range cfg.Rules {
		if (r.Key == "client_net" || r.Of == "client_net") && r.Prefix != nil {
			o.Net4, o.Net6 = r.Prefix.IPv4, r.Prefix.IPv6
			break
		}
	}
	if *whatIf != "" {
		if o.WhatIf, err = report.ParseWhatIf(*whatIf, config.ParseDuration); err != nil {
			return usageError{err}
		}
	}
	store, err := openState(cfg, *dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
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
// log lines that made it, read again from the log when it is still there.
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
	for _, b := range blocks {
		if b.Key != key {
			continue
		}
		found++
		fmt.Fprintf(stdout, "Block %d by rule %s: %s %s\n", b.ID, b.Rule, b.KeyType, safeText(b.Key))
		fmt.Fprintf(stdout, "  %s > %s within %s at %s", num(b.Value), num(b.Limit), b.Window, b.Since.UTC().Format(time.RFC3339Nano))
		if b.File != "" {
			fmt.Fprintf(stdout, " (%s:%d)", safeText(b.File), b.Line)
		}
		fmt.Fprintln(stdout)
		switch {
		case !b.Ended.IsZero():
			fmt.Fprintf(stdout, "  ended %s (%s)\n", b.Ended.UTC().Format(time.RFC3339), b.EndReason)
		case !b.Until.IsZero():
			fmt.Fprintf(stdout, "  in force until %s\n", b.Until.UTC().Format(time.RFC3339))
		default:
			fmt.Fprintln(stdout, "  in force, with no end by time")
		}
		if b.File == "" {
			continue
		}
		lines, err := evidence(b.File, b.Line, b.KeyType, b.Key, b.Since.Add(-b.Window), b.Since, loc)
		if err != nil {
			fmt.Fprintf(stdout, "  the log lines cannot be read again: %v\n", err)
			continue
		}
		fmt.Fprintf(stdout, "  the %d events of the window, from the log:\n", len(lines))
		for _, l := range lines {
			fmt.Fprintf(stdout, "    %s\n", l)
		}
	}
	if found == 0 {
		return fmt.Errorf("no block of %q in the state database", key)
	}
	return nil
}

func num(v float64) string { return fmt.Sprint(v) }

// evidence reads the log again up to the line that crossed the limit, and
// returns the lines of the key's events within the window before it.
func evidence(file string, upTo int64, keyType, key string, from, to time.Time, loc *time.Location) ([]string, error) {
	src, err := input.OpenSource(input.Spec{Path: file, Format: "auto"}, input.Options{Location: loc})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	var out []string
	match := matcher(keyType, key)
	err = src.EachLine(func(line []byte, n int64, p parsers.Parser) {
		if n > upTo {
			return
		}
		text := string(line)
		p.Parse(line, n, func(e *parsers.Event) {
			if e.Time.After(from) && !e.Time.After(to) && match(e) {
				out = append(out, fmt.Sprintf("%s:%d: %s", safeText(file), n, report.Clean(text)))
			}
		})
	})
	return out, err
}

// matcher tells whether an event has the key.
func matcher(keyType, key string) func(*parsers.Event) bool {
	switch keyType {
	case "sender":
		return func(e *parsers.Event) bool {
			return e.HasSender && (actions.FoldAddress(e.Sender) == key || e.Sender == "" && key == "<>")
		}
	case "sender_domain":
		return func(e *parsers.Event) bool { return e.SenderDomain() == key }
	case "client_ip", "client_net":
		p, err := netip.ParsePrefix(key)
		if err != nil {
			a, _ := netip.ParseAddr(key)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		return func(e *parsers.Event) bool { return e.ClientIP.IsValid() && p.Contains(e.ClientIP) }
	case "sasl_user":
		return func(e *parsers.Event) bool { return e.SASLUser == key }
	case "uid":
		return func(e *parsers.Event) bool { return fmt.Sprint(e.UID) == key }
	}
	return func(*parsers.Event) bool { return false }
}
