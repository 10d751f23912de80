package daemon

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/input"
	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/pipeline"
	"github.com/bombwatch/bombwatch/state"
)

// batch is events an input parsed, and its position after them.
type batch struct {
	input  string
	events []parsers.Event
	stats  []state.Stat   // the events', for reports
	pos    state.Position // Input "" for an input without positions
	sent   time.Time
}

// batchMax bounds the events of a batch, so that catching up on a long
// log does not hold it all in memory.
const batchMax = 4096

// inputs are the goroutines that follow the configured logs.
type inputs struct{ wg sync.WaitGroup }

func (in *inputs) wait() { in.wg.Wait() }

func (in *inputs) go_(f func()) {
	in.wg.Add(1)
	go func() { defer in.wg.Done(); f() }()
}

// startInputs starts a goroutine per configured input, and per file of a
// glob, now and as new files appear.
func startInputs(ctx context.Context, cfg *config.Config, saved map[string]state.Position, out chan<- *batch, log *slog.Logger) (*inputs, error) {
	in := &inputs{}
	loc := cfg.Location
	if loc == nil {
		loc = time.Local
	}
	for _, ic := range cfg.Inputs {
		switch {
		case ic.Path == "-":
			in.go_(func() { followStdin(ctx, ic, loc, out, log) })
		case ic.Path == "journald":
			in.go_(func() { followJournal(ctx, ic, loc, saved["journald"], out, log) })
		case strings.ContainsAny(ic.Path, "*?["):
			g := &globber{ic: ic, seen: map[string]bool{}}
			g.scan(ctx, in, true, loc, saved, out, log) // the files there now, before Run says it is ready
			in.go_(func() { g.follow(ctx, in, loc, saved, out, log) })
		default:
			path, err := filepath.Abs(ic.Path)
			if err != nil {
				return nil, err
			}
			f := openFollower(path, ic.Start == "beginning", saved, log)
			in.go_(func() { followFile(ctx, f, ic, loc, out, log) })
		}
	}
	return in, nil
}

// globber follows every file a pattern matches, and the files that come to
// match it later, from their beginning.
type globber struct {
	ic   config.Input
	seen map[string]bool
}

func (g *globber) scan(ctx context.Context, in *inputs, first bool, loc *time.Location, saved map[string]state.Position, out chan<- *batch, log *slog.Logger) {
	matches, err := filepath.Glob(g.ic.Path)
	if err != nil {
		log.Error("input glob", "pattern", g.ic.Path, "err", err)
		return
	}
	for _, m := range matches {
		abs, _ := filepath.Abs(m)
		if g.seen[abs] || strings.HasSuffix(abs, ".gz") {
			continue
		}
		g.seen[abs] = true
		f := openFollower(abs, !first || g.ic.Start == "beginning", saved, log)
		in.go_(func() { followFile(ctx, f, g.ic, loc, out, log) })
	}
}

func (g *globber) follow(ctx context.Context, in *inputs, loc *time.Location, saved map[string]state.Position, out chan<- *batch, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(g.ic.Poll)):
		}
		g.scan(ctx, in, false, loc, saved, out, log)
	}
}

// openFollower opens a file for following, at its saved position if it
// has one: before the daemon says it is ready, so that no line written
// after that is taken for the past.
func openFollower(path string, fromStart bool, saved map[string]state.Position, log *slog.Logger) *follower {
	f := &follower{Follower: input.NewFollower(path, fromStart)}
	if pos, ok := saved[path]; ok {
		how := f.Resume(input.Identity{Device: pos.Device, Inode: pos.Inode, Fingerprint: pos.Fingerprint}, pos.Offset, pos.Line)
		log.Info("input", "path", path, "resume", how, "offset", pos.Offset, "line", pos.Line)
		f.warmPath, f.warmFrom = f.Resumed() // the file itself, or the one rotated while bombwatch was down
		f.counted = pos.Counted
	}
	return f
}

// follower is a followed file, and where its parser is to read the lines
// just before its saved position again (see pipeline's Source.warm).
type follower struct {
	*input.Follower
	warmPath string
	warmFrom int64
	counted  []string // what the parser had counted, saved with the position
}

// followFile follows one file: woken by fsnotify when it changes, and by a
// timer in any case (network filesystems send no notices).
func followFile(ctx context.Context, f *follower, ic config.Input, loc *time.Location, out chan<- *batch, log *slog.Logger) {
	defer f.Close()
	path := f.Path
	var notices <-chan fsnotify.Event
	if w, err := fsnotify.NewWatcher(); err == nil {
		defer w.Close()
		// The directory: the file itself is replaced at rotation.
		if err := w.Add(filepath.Dir(path)); err == nil {
			notices = w.Events
		} else {
			log.Warn("input: no change notices, polling", "path", path, "err", err)
		}
	}
	p := newLineParser(path, ic.Format, loc, log)
	if f.warmFrom > 0 {
		discard := func(*parsers.Event) {}
		input.Before(f.warmPath, f.warmFrom, 1<<20, func(line []byte) { p.parse(line, 0, discard) })
		p.pending, p.nums = nil, nil // lines before the position never count
	}
	// What was counted before the restart and may come again (a
	// deferred message's next "from=" line, hours later).
	p.setCounted(f.counted)
	counter := pipeline.NewStatsCounter()
	poll := time.NewTicker(time.Duration(ic.Poll))
	defer poll.Stop()
	b := &batch{input: path}
	var lines, skipped int64
	send := func() bool {
		if len(b.events) == 0 && b.pos.Input == "" {
			return true
		}
		if b.pos.Input != "" {
			// Saved with the bytes before the position too: a file
			// rewritten in place that kept its first KiB is not resumed.
			b.pos.Fingerprint = f.Print(input.Pos{ID: input.Identity{Device: b.pos.Device, Inode: b.pos.Inode,
				Fingerprint: b.pos.Fingerprint}, Offset: b.pos.Offset})
			if r, ok := p.parser.(parsers.Resumable); ok {
				b.pos.Counted = r.Counted()
			}
		}
		b.stats = counter.Take(b.stats)
		b.sent = time.Now()
		select {
		case out <- b:
		case <-ctx.Done():
			return false
		}
		b = &batch{input: path}
		return true
	}
	for {
		err := f.Poll(func(line []byte, pos input.Pos) {
			lines++
			p.parse(line, pos.Line, func(e *parsers.Event) { b.events = append(b.events, *e); counter.Add(e) })
			b.pos = state.Position{Input: path, Device: pos.ID.Device, Inode: pos.ID.Inode, Offset: pos.Offset, Line: pos.Line,
				Fingerprint: pos.ID.Fingerprint}
			if len(b.events) >= batchMax {
				send()
			}
		})
		if err != nil {
			log.Error("input", "path", path, "err", err)
		}
		metrics.lines.WithLabelValues(path).Add(float64(lines))
		metrics.skipped.WithLabelValues(path).Add(float64(f.Skipped - skipped))
		lines, skipped = 0, f.Skipped
		if !send() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-notices:
		case <-poll.C:
		}
	}
}

// lineParser detects the format from the first lines when asked to, then
// parses with it.
type lineParser struct {
	name    string
	format  string
	loc     *time.Location
	log     *slog.Logger
	parser  parsers.Parser
	pending [][]byte
	nums    []int64
	counted []string // for the parser, once the format is known
}

// setCounted hands what was counted before a restart to the parser, now
// or once the format is detected.
func (lp *lineParser) setCounted(ids []string) {
	lp.counted = ids
	if r, ok := lp.parser.(parsers.Resumable); ok && len(ids) > 0 {
		r.SetCounted(ids)
		lp.counted = nil
	}
}

func newLineParser(name, format string, loc *time.Location, log *slog.Logger) *lineParser {
	lp := &lineParser{name: name, format: format, loc: loc, log: log}
	if format != "auto" && format != "" {
		lp.make(format)
	}
	return lp
}

func (lp *lineParser) make(format string) {
	f, ok := parsers.Lookup(format)
	if !ok {
		lp.log.Error("input: unknown format", "input", lp.name, "format", format)
		f, _ = parsers.Lookup("postfix")
	}
	lp.parser = f.New(parsers.Options{File: lp.name, Location: lp.loc, Reference: time.Now(), Now: time.Now})
	lp.format = f.Name
	lp.setCounted(lp.counted)
}

// detectAfter is how many lines auto-detection waits for at most.
const detectAfter = 20

func (lp *lineParser) parse(line []byte, n int64, emit func(*parsers.Event)) {
	if lp.parser != nil {
		lp.parser.Parse(line, n, emit)
		return
	}
	lp.pending = append(lp.pending, append([]byte(nil), line...))
	lp.nums = append(lp.nums, n)
	f, ok := parsers.Detect(lp.pending)
	if !ok && len(lp.pending) < detectAfter {
		return
	}
	if !ok {
		lp.log.Warn("input: cannot tell the format from the first lines; reading it as postfix", "input", lp.name)
		f, _ = parsers.Lookup("postfix")
	}
	lp.make(f.Name)
	lp.log.Info("input", "path", lp.name, "format", lp.format)
	for i, l := range lp.pending {
		lp.parser.Parse(l, lp.nums[i], emit)
	}
	lp.pending, lp.nums = nil, nil
}

// followStdin reads standard input to its end.
func followStdin(ctx context.Context, ic config.Input, loc *time.Location, out chan<- *batch, log *slog.Logger) {
	p := newLineParser("-", ic.Format, loc, log)
	r := bufio.NewReaderSize(os.Stdin, 64<<10)
	var n int64
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && (err == nil || err == io.EOF) {
			n++
			b := &batch{input: "-", sent: time.Now()}
			p.parse(bytes.TrimRight(line, "\r\n"), n, func(e *parsers.Event) { b.events = append(b.events, *e) })
			if len(b.events) > 0 {
				select {
				case out <- b:
				case <-ctx.Done():
					return
				}
			}
		}
		if err != nil {
			if err != io.EOF {
				log.Error("input: standard input", "err", err)
			}
			return
		}
	}
}

// journalctl is the program followed for the journald input.
func journalctl() string {
	if p := os.Getenv("BOMBWATCH_JOURNALCTL"); p != "" {
		return p
	}
	return "journalctl"
}

// followJournal runs `journalctl -f -o json` from the saved cursor (its
// position is the cursor of the last entry read), restarting it when it
// dies.
func followJournal(ctx context.Context, ic config.Input, loc *time.Location, saved state.Position, out chan<- *batch, log *slog.Logger) {
	cursor := string(saved.Fingerprint)
	p := newLineParser("journald", "journald", loc, log)
	var n int64
	for {
		args := []string{"-f", "-o", "json"}
		switch {
		case cursor != "":
			args = append(args, "--after-cursor="+cursor)
		case ic.Start == "beginning":
			args = append(args, "--no-tail")
		default:
			args = append(args, "-n", "0")
		}
		for _, u := range ic.Units {
			args = append(args, "-u", u)
		}
		for _, id := range ic.Identifiers {
			args = append(args, "SYSLOG_IDENTIFIER="+id)
		}
		cmd := exec.CommandContext(ctx, journalctl(), args...)
		cmd.WaitDelay = time.Second // a child holding the pipe must not hold us
		stdout, err := cmd.StdoutPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			log.Error("input: journald", "err", err)
		} else {
			r := bufio.NewReaderSize(stdout, 256<<10)
			for {
				line, err := r.ReadBytes('\n')
				if err != nil {
					break
				}
				n++
				line = bytes.TrimRight(line, "\n")
				b := &batch{input: "journald", sent: time.Now()}
				p.parse(line, n, func(e *parsers.Event) { b.events = append(b.events, *e) })
				if c := jsonString(line, "__CURSOR"); c != "" {
					cursor = c
					b.pos = state.Position{Input: "journald", Line: n, Fingerprint: []byte(c)}
				}
				select {
				case out <- b:
				case <-ctx.Done():
					cmd.Wait()
					return
				}
			}
			err = cmd.Wait()
			log.Warn("input: journalctl ended; starting it again", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// jsonString finds a string field of a flat JSON object without decoding
// it all: journal cursors hold no escapes.
func jsonString(line []byte, name string) string {
	key := []byte(fmt.Sprintf("%q:\"", name))
	i := bytes.Index(line, key)
	if i < 0 {
		return ""
	}
	v := line[i+len(key):]
	if j := bytes.IndexByte(v, '"'); j >= 0 {
		return string(v[:j])
	}
	return ""
}
