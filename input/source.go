package input

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/state"
)

// Spec is one log to read, as the config or the command line gives it.
type Spec struct {
	// Path is a file, "-" for standard input, or "journald". Globs are
	// expanded by Open into one Source per log they match.
	Path string
	// Format is a registered format, or "auto" (or "") to detect it from
	// the first lines.
	Format string
	// FromStart reads a followed file that has no saved position from its
	// start rather than its end.
	FromStart bool
	// Poll is how often a followed file is looked at when no change notice
	// came (network filesystems send none). Zero is a second.
	Poll time.Duration
	// Units and Identifiers filter the journal.
	Units, Identifiers []string
}

// Options say how sources read.
type Options struct {
	// Follow waits for more at the end of data (run); without it a source
	// finishes there (replay).
	Follow bool
	// Location is the zone of stamps that carry none.
	Location *time.Location
	// Now is the wall clock: the year of classic stamps on standard input
	// and in followed logs, and how long an input has been idle. Nil is
	// time.Now.
	Now func() time.Time
	// Positions are the saved positions, by absolute path ("journald" for
	// the journal's cursor). Nil when positions are not saved (a replay in
	// memory): what they would need is not kept.
	Positions map[string]state.Position
	// Stats counts the events per minute for reports, as they are read.
	Stats bool
	// Log receives what a followed input meets (rotation, errors).
	Log *slog.Logger
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Source is one log being read: a file (followed through its rotations, or
// a run of its rotated files read oldest first), standard input, or the
// journal. Both modes — to the end (replay) and following (run) — share
// all but the end of data: format detection, one parser whose state
// carries across the log's files, the lines read again before a saved
// position, the year of yearless stamps, stats, and positions.
//
// Lines are read and parsed in a goroutine of the source's own, a batch at
// a time, while the pipeline runs the events of the batch before. A Merger
// hands the events of all sources on in time order.
type Source struct {
	Name   string // as given
	Format string // the format in use, once known
	// Stats are written by the reading goroutine: read them once the
	// source is finished.
	Stats SourceStats

	spec  Spec
	o     Options
	log   *slog.Logger
	files []string // to the end: the files still to read, oldest first
	rd    *Reader  // to the end: the file being read
	fol   *Follower
	warm  func(p parsers.Parser)
	// warmFile is the file warm reads, open since the resume; closed once
	// read, or with the source.
	warmFile *os.File
	counted  []string // saved with the position, for the parser once it is made

	abs     string // the path positions are saved under; "" for none
	parser  parsers.Parser
	pending [][]byte // lines waiting for the format to be detected
	pendNo  []int64
	told    bool // that the format cannot be detected
	emitFn  func(*parsers.Event)
	lineEnd int64 // after the line being parsed, for its events
	lineNo  int64
	filling *batch
	// Stats are counted by the reading goroutine, a batch at a time, and
	// handed on when all the batch's events ran. A batch a position is
	// saved inside of is counted here instead, by the merger's goroutine,
	// as far as it ran: stats and positions go together.
	counter   *StatsCounter // the reader's
	ranStats  *StatsCounter // the merger's, for batches split by a save
	doneStats state.Stats
	countedTo int // of the current batch, events counted by ranStats; -1: none
	wake      chan<- struct{}

	// What the merger sees, in its goroutine.
	cur        *batch
	head       int
	done       state.Position // after the last line whose events all ran
	doneIDs    []string       // the parser's counted queue IDs at done's batch start
	curIDs     []parsers.QID  // the accepted queue IDs run from the current batch
	doneCut    bool           // done is inside the current batch
	idle       bool           // the reader found no more, and all it sent ran
	idleSince  time.Time
	newest     time.Time // of the events run from it
	finished   bool
	err        error
	batches    chan *batch
	free       chan *batch
	quit       chan struct{}
	started    bool
	skipBase   int64 // lines skipped in the log's files before this one
	feed       Feed  // another host's events (RemoteSource)
	notices    <-chan struct{}
	linesRead  atomic.Int64
	skippedNow atomic.Int64
}

// SourceStats counts a source's lines.
type SourceStats struct {
	Lines      int64
	Recognised int64
	Skipped    int64 // too long
	Events     [8]int64
	Resumed    bool // reading started at a saved position
}

// batch is events parsed from a run of lines of one file, and where the
// run ends.
type batch struct {
	events  []queued
	stats   state.Stats
	pos     state.Position // after the batch's last line; Input "" for none
	counted []string       // the parser's, after the batch
	idle    bool           // nothing more to read for now
	at      time.Time      // when it was sent; if idle, since when
	eof     bool
	err     error // that ended the log early
}

type queued struct {
	ev   parsers.Event
	end  int64 // offset after the event's line
	line int64
}

const (
	batchEvents = 1024
	batchLines  = 8192
	batchesMax  = 4
	// detectLines is how many lines of an MTA's format detection looks
	// at; other programs' lines before them are skipped, up to
	// detectScan lines of a finished log.
	detectLines = 50
	detectScan  = 1_000_000
	// warmSpan is how much of a log before a saved position is read again
	// for its parser's sake: a Postfix message's smtpd and qmgr lines are
	// seconds apart, so a megabyte of log covers them.
	warmSpan = 1 << 20
)

// OpenSource opens one log; see OpenSources for globs and a config's inputs.
// Read to its end, a file whose format cannot be detected from its first
// lines is an error; followed, its lines wait until it can.
func OpenSource(spec Spec, o Options) (*Source, error) {
	return openSource(spec, []string{spec.Path}, o)
}

func openSource(spec Spec, files []string, o Options) (*Source, error) {
	s := &Source{Name: strings.Join(files, " + "), spec: spec, o: o, log: o.Log}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.emitFn = s.emit
	s.countedTo = -1
	if o.Stats {
		s.counter, s.ranStats = NewStatsCounter(), NewStatsCounter()
	}
	switch {
	case spec.Path == "journald" && o.Follow:
		s.abs = "journald"
		if pos, ok := o.Positions["journald"]; ok {
			s.done = pos
		}
		s.Format = "journald"
		s.makeParser("journald", time.Time{})
		return s, nil
	case spec.Path == "-":
		r, err := Open("-")
		if err != nil {
			return nil, err
		}
		s.rd = r
	case o.Follow:
		abs, err := filepath.Abs(spec.Path)
		if err != nil {
			return nil, err
		}
		s.abs, s.Name = abs, abs
		s.fol = NewFollower(abs, spec.FromStart)
		if pos, ok := o.Positions[abs]; ok {
			how := s.fol.Resume(Identity{Device: pos.Device, Inode: pos.Inode, Fingerprint: pos.Fingerprint}, pos.Offset, pos.Line)
			in, _ := s.fol.Resumed()
			if how == "new" {
				// Rotated out of what logrotate keeps while bombwatch was
				// down (or killed again and again before it could save):
				// what the file held after the position is lost.
				s.log.Warn("input: the file of the saved position is gone; reading the current one from its start: lines between were not read",
					"path", abs, "offset", pos.Offset, "line", pos.Line)
			} else {
				s.log.Info("input", "path", abs, "resume", how, "in", in, "offset", pos.Offset, "line", pos.Line)
			}
			s.Stats.Resumed = how != "new"
			if file, off := s.fol.ResumedFile(); off > 0 {
				// Opened now: the parser is made at the first line, and a
				// rotation by then may have put another file under the
				// name — read again instead, its messages would be taken
				// for counted ones, or their smtpd lines missed.
				s.warmFile = file
				s.warm = func(p parsers.Parser) {
					discard := func(*parsers.Event) {}
					BeforeIn(file, off, warmSpan, func(line []byte) { p.Parse(line, 0, discard) })
					file.Close()
					s.warmFile = nil
				}
			} else if file != nil {
				file.Close()
			}
			s.counted = pos.Counted
		}
		s.done = s.followPosition(s.fol.Position())
		if pos, ok := o.Positions[abs]; ok {
			// Until a line is read, the saved position stands: the rest of
			// a file rotated meanwhile is still to be read from it.
			s.done = pos
		}
		s.done.Counted, s.doneIDs = s.counted, s.counted
		if s.spec.Format != "" && s.spec.Format != "auto" {
			if err := s.makeParser(s.spec.Format, s.fol.modTime()); err != nil {
				s.fol.Close()
				return nil, err
			}
		}
		return s, nil
	default:
		if err := s.openFile(files[0]); err != nil {
			return nil, err
		}
		s.files = files[1:]
		s.done = s.readerPosition()
		s.done.Counted = s.counted
	}
	format := spec.Format
	if o.Follow && (format == "" || format == "auto") {
		return s, nil // standard input, followed: detected as lines come
	}
	if format == "" || format == "auto" {
		head, err := s.rd.Head(detectLines)
		if err != nil {
			s.rd.Close()
			return nil, err
		}
		f, ok := parsers.Detect(head)
		if !ok && len(head) > 0 && s.rd.Name != "-" {
			// A mail.log whose first lines are dovecot's or opendkim's:
			// the MTA's own lines decide, wherever they first come.
			f, ok = detectFurther(append([]string{s.rd.Name}, s.files...))
		}
		if !ok {
			if len(head) == 0 && len(s.files) == 0 {
				s.finished = true // nothing to read: an empty file, or one read to its end
				return s, nil
			}
			s.rd.Close()
			if len(head) == 0 {
				return nil, fmt.Errorf("%s: empty; cannot tell the log format; give --format (%v)", s.rd.Name, parsers.Names())
			}
			return nil, fmt.Errorf("%s: cannot tell the log format: no line of an MTA's among its first lines (%q); give --format (%v)",
				s.rd.Name, firstLine(head), parsers.Names())
		}
		format = f.Name
	}
	if err := s.makeParser(format, s.rd.ModTime); err != nil {
		s.rd.Close()
		return nil, err
	}
	return s, nil
}

// openFile opens the next file of a log read to its end, at its saved
// position if it has one.
func (s *Source) openFile(name string) error {
	r, err := Open(name)
	if err != nil {
		return err
	}
	s.rd = r
	s.abs = ""
	if name != "-" {
		if s.abs, err = filepath.Abs(name); err != nil {
			s.abs = name
		}
		if pos, ok := s.o.Positions[s.abs]; ok {
			resumed, err := r.Resume(pos.Fingerprint, pos.Offset, pos.Line)
			if err != nil {
				r.Close()
				return err
			}
			s.Stats.Resumed = s.Stats.Resumed || resumed
			if resumed {
				s.warm = func(p parsers.Parser) { warm(p, name, r.Offset()) }
				if !s.started {
					s.counted, s.doneIDs = pos.Counted, pos.Counted
				}
			}
		}
	}
	return nil
}

// warm lets the parser read the lines just before the position it resumes
// at, discarding their events: they ran before. Without it, a message
// whose smtpd line came before the position would lose its client.
func warm(p parsers.Parser, path string, offset int64) {
	discard := func(*parsers.Event) {}
	Before(path, offset, warmSpan, func(line []byte) { p.Parse(line, 0, discard) })
}

// makeParser makes the parser of format. Classic stamps take their year
// from the file's modification time; from the wall clock for standard
// input and, moving with it, for a followed log.
func (s *Source) makeParser(format string, mod time.Time) error {
	f, ok := parsers.Lookup(format)
	if !ok {
		return fmt.Errorf("%s: unknown format %q (%v)", s.Name, format, parsers.Names())
	}
	po := parsers.Options{File: s.Name, Location: s.o.Location, Reference: mod}
	if s.o.Follow {
		po.Now = s.o.now
	}
	if po.Reference.IsZero() {
		po.Reference = s.o.now()
	}
	s.Format = f.Name
	s.parser = f.New(po)
	if s.warm != nil {
		s.warm(s.parser)
		s.warm = nil
	}
	if r, ok := s.parser.(parsers.Resumable); ok && len(s.counted) > 0 {
		r.SetCounted(s.counted)
	}
	s.counted = nil
	return nil
}

// detectFurther reads the files of a log from their start, skipping the
// lines no format claims (other programs' in a shared mail.log), and
// detects the format from the first detectLines lines that one claims.
func detectFurther(files []string) (parsers.Format, bool) {
	var claimed [][]byte
	read := 0
	for _, name := range files {
		r, err := Open(name)
		if err != nil {
			break
		}
		for read < detectScan && len(claimed) < detectLines {
			line, err := r.Next()
			if err != nil {
				break
			}
			read++
			if _, ok := parsers.Detect([][]byte{line}); ok {
				claimed = append(claimed, bytes.Clone(line))
			}
		}
		r.Close()
		if read >= detectScan || len(claimed) >= detectLines {
			break
		}
	}
	return parsers.Detect(claimed)
}

func firstLine(head [][]byte) []byte {
	l := head[0]
	if len(l) > 80 {
		l = l[:80]
	}
	return bytes.ToValidUTF8(l, []byte("?"))
}

// parse hands a line to the parser; until the format is known, lines wait
// for detection, which looks at up to detectLines of them.
func (s *Source) parse(line []byte, n int64) bool {
	if s.parser != nil {
		return s.parser.Parse(line, n, s.emitFn)
	}
	s.pending = append(s.pending, bytes.Clone(line))
	s.pendNo = append(s.pendNo, n)
	f, ok := parsers.Detect(s.pending)
	if !ok {
		if len(s.pending) >= detectLines {
			// Not an MTA's log, or not yet: other programs' lines are not
			// events. Detection goes on with the lines that follow.
			if !s.told {
				s.log.Warn("input: no line of an MTA's yet; skipping other programs' lines until one comes (or give format:)", "input", s.Name,
					"formats", parsers.Names(), "first", string(firstLine(s.pending)))
				s.told = true
			}
			s.pending, s.pendNo = s.pending[:0], s.pendNo[:0]
		}
		return false
	}
	var mod time.Time
	if s.fol != nil {
		mod = s.fol.modTime()
	}
	s.makeParser(f.Name, mod)
	s.log.Info("input", "path", s.Name, "format", s.Format)
	recognised := false
	for i, l := range s.pending {
		if s.parser.Parse(l, s.pendNo[i], s.emitFn) {
			recognised = true
		}
	}
	s.pending, s.pendNo = nil, nil
	return recognised
}

func (s *Source) emit(e *parsers.Event) {
	s.Stats.Events[e.Kind&7]++
	if s.rd != nil && s.rd.Name != "-" {
		e.File = s.rd.Name // of a log's several files, the one read
	}
	if s.counter != nil {
		s.counter.Add(e)
	}
	s.filling.events = append(s.filling.events, queued{ev: *e, end: s.lineEnd, line: s.lineNo})
}

// Close stops the reading goroutine and closes the log.
func (s *Source) Close() error {
	if s.started {
		close(s.quit)
		for range s.batches { // until the reader has stopped
		}
		s.started = false
	}
	if s.fol != nil {
		s.fol.Close()
	}
	if s.warmFile != nil {
		s.warmFile.Close()
		s.warmFile = nil
	}
	if s.rd != nil {
		return s.rd.Close()
	}
	return nil
}

// Err is the read error that ended the source early, if any.
func (s *Source) Err() error { return s.err }

// LinesRead is how many lines have been read so far; safe while the source
// is being read.
func (s *Source) LinesRead() int64 { return s.linesRead.Load() }

// SkippedLines is how many lines were too long; safe while the source is
// being read.
func (s *Source) SkippedLines() int64 { return s.skippedNow.Load() }

// start starts the reading goroutine; wake is told of every batch sent.
func (s *Source) start(wake chan<- struct{}) {
	s.started = true
	s.wake = wake
	s.batches = make(chan *batch, batchesMax)
	s.free = make(chan *batch, batchesMax+2)
	s.quit = make(chan struct{})
	for range batchesMax + 2 {
		s.free <- &batch{events: make([]queued, 0, batchEvents)}
	}
	switch {
	case s.fol != nil:
		go s.follow()
	case s.feed != nil:
		go s.readRemote()
	case s.abs == "journald" && s.rd == nil:
		go s.journal()
	default:
		go s.readToEnd()
	}
}

// next takes a free batch to fill; false when the source is closed.
func (s *Source) next() bool {
	select {
	case s.filling = <-s.free:
	case <-s.quit:
		return false
	}
	s.filling.events = s.filling.events[:0]
	s.filling.err, s.filling.idle, s.filling.eof = nil, false, false
	s.filling.pos = state.Position{}
	return true
}

// send hands the batch being filled to the merger.
func (s *Source) send() bool {
	b := s.filling
	b.counted = nil
	if r, ok := s.parser.(parsers.Resumable); ok && (s.o.Follow || s.o.Positions != nil) {
		b.counted = r.Counted() // saved with the position; a replay in memory saves none
	}
	b.stats.Reset()
	if s.counter != nil {
		s.counter.Take(&b.stats)
	}
	b.at = s.o.now()
	if b.idle && s.fol != nil {
		// Idle since it was last written, not since we noticed: a log
		// read to its end after downtime has been quiet all along.
		if mod := s.fol.modTime(); !mod.IsZero() && mod.Before(b.at) {
			b.at = mod
		}
	}
	s.linesRead.Store(s.Stats.Lines)
	select {
	case s.batches <- b:
	case <-s.quit:
		return false
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

func (s *Source) setLine(end, n int64) { s.lineEnd, s.lineNo = end, n }

// readToEnd is the reading goroutine of a log read to its end (and of
// standard input, which ends when the writer closes it).
func (s *Source) readToEnd() {
	defer close(s.batches)
	if !s.next() {
		return
	}
	sentIdle := false
	for {
		lines := 0
		for len(s.filling.events) < batchEvents && lines < batchLines {
			if s.o.Follow && s.rd.Buffered() == 0 && (len(s.filling.events) > 0 || lines > 0 || !sentIdle) {
				break // what came is handed on before a read that may wait
			}
			sentIdle = false
			line, err := s.rd.Next()
			if err != nil {
				s.Stats.Skipped = s.skipBase + s.rd.Skipped
				s.skipBase = s.Stats.Skipped
				s.skippedNow.Store(s.Stats.Skipped)
				if !errors.Is(err, io.EOF) {
					s.filling.err = err
				} else if len(s.files) > 0 {
					// The next file of the log: the parser goes on.
					s.filling.pos = s.readerPosition()
					name := s.files[0]
					s.files = s.files[1:]
					if !s.send() || !s.next() {
						return
					}
					s.rd.Close()
					if err := s.openFile(name); err != nil {
						s.filling.err = err
					} else {
						if s.warm != nil && s.parser != nil {
							s.warm(s.parser)
							s.warm = nil
						}
						lines = 0
						continue
					}
				}
				s.Finish(s.emitFn) // the end of the log: what the parser holds is what it is
				s.filling.pos = s.readerPosition()
				s.filling.eof = true
				s.send()
				return
			}
			lines++
			s.Stats.Lines++
			s.setLine(s.rd.Offset(), s.rd.Line())
			if s.parse(line, s.rd.Line()) {
				s.Stats.Recognised++
			}
		}
		s.filling.pos = s.readerPosition()
		s.filling.idle = s.o.Follow && s.rd.Buffered() == 0
		sentIdle = s.filling.idle
		if !s.send() || !s.next() {
			return
		}
	}
}

func (s *Source) readerPosition() state.Position {
	if s.abs == "" {
		return state.Position{}
	}
	return state.Position{Input: s.abs, Device: s.rd.ID.Device, Inode: s.rd.ID.Inode,
		Offset: s.rd.Offset(), Line: s.rd.Line(), Fingerprint: s.rd.ID.Fingerprint}
}

func (s *Source) followPosition(p Pos) state.Position {
	return state.Position{Input: s.abs, Device: p.ID.Device, Inode: p.ID.Inode, Offset: p.Offset, Line: p.Line,
		Fingerprint: p.ID.Fingerprint}
}

// follow is the reading goroutine of a followed file: woken by fsnotify
// when its directory changes, and by a timer in any case.
func (s *Source) follow() {
	defer close(s.batches)
	var notices <-chan fsnotify.Event
	if w, err := fsnotify.NewWatcher(); err == nil {
		defer w.Close()
		// The directory: the file itself is replaced at rotation.
		if err := w.Add(filepath.Dir(s.abs)); err == nil {
			notices = w.Events
		} else {
			s.log.Warn("input: no change notices, polling", "path", s.abs, "err", err)
		}
	}
	poll := s.spec.Poll
	if poll <= 0 {
		poll = time.Second
	}
	timer := time.NewTicker(poll)
	defer timer.Stop()
	if !s.next() {
		return
	}
	var failed errorLimiter
	sentIdle := false
	var sentPos state.Position
	for {
		var id Identity
		cut := func() bool { // the batch ends with each file: a position names one
			if len(s.filling.events) == 0 {
				return true
			}
			s.filling.pos = s.withPrint(s.followPosition(Pos{ID: id, Offset: s.lineEnd, Line: s.lineNo}))
			sentPos, sentIdle = s.filling.pos, false
			return s.send() && s.next()
		}
		ok := true
		lines := 0
		read := false // a line this time: the position is after it
		err := s.fol.Poll(func(line []byte, pos Pos) {
			if !ok {
				return
			}
			// A batch is of one file: its positions name it. A file cut in
			// place and written again (copytruncate) keeps its inode, so
			// its first bytes, and offsets going back, tell it too.
			if otherFile(id, pos, s.lineEnd) || lines >= batchLines || len(s.filling.events) >= batchEvents {
				ok = cut()
				lines = 0
			}
			id, read = pos.ID, true
			lines++
			s.Stats.Lines++
			s.setLine(pos.Offset, pos.Line)
			if s.parse(line, pos.Line) {
				s.Stats.Recognised++
			}
		})
		if !ok {
			return
		}
		s.Stats.Skipped = s.fol.Skipped
		s.skippedNow.Store(s.Stats.Skipped)
		if err != nil {
			failed.log(s.log, s.o.now(), "input", "path", s.abs, "err", err)
		}
		// The position is after the last line read, in the file it was
		// read from: the follower may have moved on to a file it read
		// nothing of yet, or to none (renamed away, not yet recreated).
		pos := sentPos
		if read {
			pos = s.withPrint(s.followPosition(Pos{ID: id, Offset: s.lineEnd, Line: s.lineNo}))
		}
		if len(s.filling.events) > 0 || !sentIdle || !samePosition(pos, sentPos) {
			s.filling.pos, s.filling.idle = pos, true
			if !s.send() || !s.next() {
				return
			}
			sentIdle, sentPos = true, pos
		}
		select {
		case <-s.quit:
			return
		case <-notices:
		case <-timer.C:
		}
	}
}

// otherFile reports whether the line at pos is of another file than the
// last one, at id, which ended at end.
func otherFile(id Identity, pos Pos, end int64) bool {
	return pos.ID.Inode != id.Inode || pos.ID.Device != id.Device ||
		!bytes.Equal(headPrint(pos.ID.Fingerprint), headPrint(id.Fingerprint)) || pos.Offset <= end && end > 0
}

// withPrint adds the fingerprint of the bytes before a position in the
// file followed: a file rewritten in place that kept its first KiB is not
// resumed.
func (s *Source) withPrint(p state.Position) state.Position {
	if p.Offset > 0 {
		p.Fingerprint = s.fol.Print(Pos{ID: Identity{Device: p.Device, Inode: p.Inode, Fingerprint: p.Fingerprint}, Offset: p.Offset})
	}
	return p
}

func samePosition(a, b state.Position) bool {
	return a.Input == b.Input && a.Inode == b.Inode && a.Device == b.Device && a.Offset == b.Offset
}

// errorLimiter logs an error at once, then at most once a minute while it
// goes on.
type errorLimiter struct{ last time.Time }

func (l *errorLimiter) log(log *slog.Logger, now time.Time, msg string, args ...any) {
	if now.Sub(l.last) >= time.Minute {
		log.Error(msg, args...)
		l.last = now
	}
}

// journalctl is the program followed for the journald input.
func journalctl() string {
	if p := os.Getenv("BOMBWATCH_JOURNALCTL"); p != "" {
		return p
	}
	return "journalctl"
}

// journal is the reading goroutine of the journald input: `journalctl -f
// -o json` from the saved cursor (the position of the last entry read),
// started again when it dies. Each entry is a batch of its own, so that
// each position is a cursor.
func (s *Source) journal() {
	defer close(s.batches)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-s.quit; cancel() }()
	cursor := string(s.done.Fingerprint)
	var n int64
	if !s.next() {
		return
	}
	var failed errorLimiter
	for {
		args := []string{"-f", "-o", "json"}
		switch {
		case cursor != "":
			args = append(args, "--after-cursor="+cursor)
		case s.spec.FromStart:
			args = append(args, "--no-tail")
		default:
			args = append(args, "-n", "0")
		}
		for _, u := range s.spec.Units {
			args = append(args, "-u", u)
		}
		for _, id := range s.spec.Identifiers {
			args = append(args, "SYSLOG_IDENTIFIER="+id)
		}
		cmd := exec.CommandContext(ctx, journalctl(), args...)
		cmd.WaitDelay = time.Second // a child holding the pipe must not hold us
		stdout, err := cmd.StdoutPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			failed.log(s.log, s.o.now(), "input: journald", "err", err)
		} else {
			r := bufio.NewReaderSize(stdout, 256<<10)
			for {
				line, err := r.ReadSlice('\n')
				if errors.Is(err, bufio.ErrBufferFull) {
					for errors.Is(err, bufio.ErrBufferFull) { // too long: skipped whole
						_, err = r.ReadSlice('\n')
					}
					s.Stats.Skipped++
					continue
				}
				if err != nil {
					break
				}
				n++
				s.Stats.Lines++
				line = bytes.TrimRight(line, "\n")
				s.setLine(0, n)
				if s.parse(line, n) {
					s.Stats.Recognised++
				}
				if c := jsonString(line, "__CURSOR"); c != "" {
					cursor = c
					s.filling.pos = state.Position{Input: "journald", Line: n, Fingerprint: []byte(c)}
				}
				s.filling.idle = r.Buffered() == 0
				if len(s.filling.events) > 0 || s.filling.idle || s.filling.pos.Input != "" {
					if !s.send() || !s.next() {
						cmd.Wait()
						return
					}
				}
			}
			err = cmd.Wait()
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("input: journalctl ended; starting it again", "err", err)
		}
		select {
		case <-s.quit:
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

// modTime is the followed file's modification time, or zero.
func (f *Follower) modTime() time.Time {
	if st, err := os.Stat(f.Path); err == nil {
		return st.ModTime()
	}
	return time.Time{}
}

// Finish hands on, at the end of a finished log, what its parser holds
// waiting for a later line (see parsers.Finisher).
func (s *Source) Finish(emit func(*parsers.Event)) {
	if f, ok := s.parser.(parsers.Finisher); ok {
		f.Finish(emit)
	}
}

// EachLine hands every line to fn with the source's parser, for tools that
// want each line's outcome (`parse --stats`) rather than the events alone.
// It reads in the caller's goroutine, to the end (not to be merged), and
// returns the read error that ended the log early, if any.
func (s *Source) EachLine(fn func(line []byte, lineNo int64, p parsers.Parser)) error {
	if s.finished || s.rd == nil {
		return nil
	}
	defer func() { s.finished = true }()
	for {
		line, err := s.rd.Next()
		if err != nil {
			s.Stats.Skipped += s.rd.Skipped
			if !errors.Is(err, io.EOF) {
				s.err = err
				return err
			}
			if len(s.files) == 0 {
				return nil
			}
			s.rd.Close()
			name := s.files[0]
			s.files = s.files[1:]
			if err := s.openFile(name); err != nil {
				s.err = err
				return err
			}
			continue
		}
		s.Stats.Lines++
		fn(line, s.rd.Line(), s.parser)
	}
}
