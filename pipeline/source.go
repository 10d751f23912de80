package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/bombwatch/bombwatch/input"
	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/state"
)

// Source is one log being read: lines in, events out, in order.
//
// Lines are read and parsed in a goroutine of the source's own, a batch
// at a time, while the pipeline runs the events of the batch before: on a
// machine with two cores, reading a log costs the pipeline almost nothing.
// The events, and so the decisions, are the same and in the same order.
type Source struct {
	Name   string
	Format string // the format used, after detection
	// Stats are written by the reading goroutine: read them once the
	// source is exhausted.
	Stats SourceStats

	r      *input.Reader
	abs    string // the path positions are saved under; "" for stdin
	parser parsers.Parser
	emitFn func(*parsers.Event)
	eof    bool
	err    error
	done   state.Position // after the last line whose events all ran

	cur     *batch // the batch being run
	head    int    // its next event
	filling *batch // the batch the reader fills
	batches chan *batch
	free    chan *batch
	quit    chan struct{}
	started bool

	// read counts the lines read so far, for a progress line while the
	// source is being read.
	linesRead atomic.Int64

	// stats counts for reports in the reading goroutine, when asked to;
	// doneStats are those of the batches whose events all ran.
	stats     *StatsCounter
	doneStats []state.Stat
}

// batch is events parsed from a run of lines, and where the run ends.
type batch struct {
	events []queued
	stats  []state.Stat
	offset int64 // after the batch's last line
	line   int64
	err    error // that ended the log early
}

const (
	batchEvents = 1024
	batchLines  = 8192
	batchesMax  = 4
)

type queued struct {
	ev   parsers.Event
	end  int64 // offset after the event's line
	line int64
}

// SourceStats counts a source's lines.
type SourceStats struct {
	Lines      int64
	Recognised int64
	Skipped    int64 // too long
	Events     [8]int64
	Resumed    bool // reading started at a saved position
}

// SourceOptions say how to read a log.
type SourceOptions struct {
	Format   string         // a registered format, or "auto"
	Location *time.Location // zone of stamps without one
	// Now is the reference for the year of classic syslog stamps when the
	// log has no modification time (standard input).
	Now time.Time
	// Positions are the saved positions, by absolute path.
	Positions map[string]state.Position
	// Stats counts the events for reports, as they are read.
	Stats bool
}

// OpenSource opens a log and picks its parser. With format "auto" the
// format is detected from the first lines.
func OpenSource(name string, o SourceOptions) (*Source, error) {
	r, err := input.Open(name)
	if err != nil {
		return nil, err
	}
	s := &Source{Name: name, r: r}
	s.emitFn = s.emit
	if o.Stats {
		s.stats = NewStatsCounter()
	}
	if name != "-" {
		if s.abs, err = filepath.Abs(name); err != nil {
			s.abs = name
		}
		if pos, ok := o.Positions[s.abs]; ok {
			resumed, err := r.Resume(pos.Fingerprint, pos.Offset, pos.Line)
			if err != nil {
				r.Close()
				return nil, err
			}
			s.Stats.Resumed = resumed
		}
	}
	s.done = s.currentPosition()
	format := o.Format
	if format == "" || format == "auto" {
		head, err := r.Head(50)
		if err != nil {
			r.Close()
			return nil, err
		}
		f, ok := parsers.Detect(head)
		if !ok {
			if len(head) == 0 {
				s.eof = true // nothing to read: an empty file, or one read to its end
				return s, nil
			}
			r.Close()
			return nil, fmt.Errorf("%s: cannot tell the log format from its first lines (%q); give --format (%v)",
				name, firstLine(head), parsers.Names())
		}
		format = f.Name
	}
	f, ok := parsers.Lookup(format)
	if !ok {
		r.Close()
		return nil, fmt.Errorf("%s: unknown format %q (%v)", name, format, parsers.Names())
	}
	ref := r.ModTime
	if ref.IsZero() {
		ref = o.Now
	}
	s.Format = format
	s.parser = f.New(parsers.Options{File: name, Location: o.Location, Reference: ref})
	if s.Stats.Resumed {
		s.warm()
	}
	return s, nil
}

// warmSpan is how much of a log before a saved position a resumed source
// reads again for its parser's sake: a Postfix message's smtpd and qmgr
// lines are seconds apart, so a megabyte of log covers them.
const warmSpan = 1 << 20

// warm lets the parser read the lines just before the position it resumes
// at, discarding their events: they ran before the restart. Without it, a
// message whose smtpd line came before the position would lose its client.
func (s *Source) warm() {
	discard := func(*parsers.Event) {}
	input.Before(s.Name, s.r.Offset(), warmSpan, func(line []byte) { s.parser.Parse(line, 0, discard) })
}

func firstLine(head [][]byte) []byte {
	l := head[0]
	if len(l) > 80 {
		l = l[:80]
	}
	return bytes.ToValidUTF8(l, []byte("?"))
}

// Close stops the reading goroutine and closes the log.
func (s *Source) Close() error {
	if s.started {
		close(s.quit)
		for range s.batches { // until the reader has stopped
		}
		s.started = false
	}
	return s.r.Close()
}

// Err is the read error that ended the source early, if any.
func (s *Source) Err() error { return s.err }

func (s *Source) emit(e *parsers.Event) {
	s.Stats.Events[e.Kind&7]++
	if s.stats != nil {
		s.stats.Add(e)
	}
	s.filling.events = append(s.filling.events, queued{ev: *e, end: s.r.Offset(), line: s.r.Line()})
}

// read is the reading goroutine: it parses lines into batches until the
// end of the log, or until Close.
func (s *Source) read() {
	defer close(s.batches)
	lines := 0
	for {
		select {
		case s.filling = <-s.free:
		case <-s.quit:
			return
		}
		s.filling.events = s.filling.events[:0]
		s.filling.err = nil
		for lines = 0; len(s.filling.events) < batchEvents && lines < batchLines; lines++ {
			line, err := s.r.Next()
			if err != nil {
				s.Stats.Skipped = s.r.Skipped
				if !errors.Is(err, io.EOF) {
					s.filling.err = err
				}
				s.filling.offset, s.filling.line = s.r.Offset(), s.r.Line()
				s.takeStats()
				select {
				case s.batches <- s.filling:
				case <-s.quit:
				}
				return
			}
			s.Stats.Lines++
			if s.parser.Parse(line, s.r.Line(), s.emitFn) {
				s.Stats.Recognised++
			}
		}
		s.filling.offset, s.filling.line = s.r.Offset(), s.r.Line()
		s.takeStats()
		s.linesRead.Store(s.Stats.Lines)
		select {
		case s.batches <- s.filling:
		case <-s.quit:
			return
		}
	}
}

// LinesRead is how many lines have been read so far; safe while the source
// is being read.
func (s *Source) LinesRead() int64 { return s.linesRead.Load() }

func (s *Source) takeStats() {
	s.filling.stats = s.filling.stats[:0]
	if s.stats != nil {
		s.filling.stats = s.stats.Take(s.filling.stats)
	}
}

func (s *Source) start() {
	s.started = true
	s.batches = make(chan *batch, batchesMax)
	s.free = make(chan *batch, batchesMax+2)
	s.quit = make(chan struct{})
	for range batchesMax + 2 {
		s.free <- &batch{events: make([]queued, 0, batchEvents)}
	}
	go s.read()
}

// peek returns the next event, parsed by the reading goroutine, or nil at
// the end of the log.
func (s *Source) peek() *queued {
	if s.eof {
		return nil
	}
	if !s.started {
		s.start()
	}
	for s.cur == nil || s.head == len(s.cur.events) {
		if s.cur != nil {
			// Every event of the batch ran: its lines are done.
			s.done.Offset, s.done.Line = s.cur.offset, s.cur.line
			s.doneStats = append(s.doneStats, s.cur.stats...)
			s.free <- s.cur
			s.cur = nil
		}
		b, ok := <-s.batches
		if !ok {
			s.eof = true
			return nil
		}
		s.cur, s.head = b, 0
		if b.err != nil {
			s.err = b.err
		}
	}
	return &s.cur.events[s.head]
}

// pop takes the waiting event (peek must have returned one).
func (s *Source) pop() *parsers.Event {
	q := &s.cur.events[s.head]
	s.head++
	if s.head < len(s.cur.events) && s.cur.events[s.head].line != q.line {
		s.done.Offset, s.done.Line = q.end, q.line
	}
	return &q.ev
}

func (s *Source) currentPosition() state.Position {
	return state.Position{Input: s.abs, Device: s.r.ID.Device, Inode: s.r.ID.Inode,
		Offset: s.r.Offset(), Line: s.r.Line(), Fingerprint: s.r.ID.Fingerprint}
}

// position is how far the source's effects have run: to the end of what was
// read when no event is waiting, else after the last line whose events ran.
// Standard input has none.
func (s *Source) position() (state.Position, bool) {
	if s.abs == "" {
		return state.Position{}, false
	}
	if s.cur != nil && s.head == len(s.cur.events) {
		// The batch's stats go with the position past it.
		s.doneStats = append(s.doneStats, s.cur.stats...)
		s.cur.stats = s.cur.stats[:0]
		p := s.done
		p.Offset, p.Line = s.cur.offset, s.cur.line
		return p, true
	}
	return s.done, true
}

// nextSource returns the source whose waiting event is the oldest (the
// first given, on a tie), or nil when all are read: logs of several MTAs,
// or the rotated parts of one, run in time order as they happened.
func nextSource(srcs []*Source) *Source {
	var best *Source
	var bestTime time.Time
	for _, s := range srcs {
		q := s.peek()
		if q == nil {
			continue
		}
		if best == nil || q.ev.Time.Before(bestTime) {
			best, bestTime = s, q.ev.Time
		}
	}
	return best
}

// EachLine hands every line to fn with the source's parser, for tools that
// want each line's outcome (`parse --stats`) rather than the events alone.
// It returns the read error that ended the log early, if any. It reads in
// the caller's goroutine, and is not to be mixed with Process.
func (s *Source) EachLine(fn func(line []byte, lineNo int64, p parsers.Parser)) error {
	for !s.eof {
		line, err := s.r.Next()
		if err != nil {
			s.eof = true
			s.Stats.Skipped = s.r.Skipped
			if !errors.Is(err, io.EOF) {
				s.err = err
				return err
			}
			break
		}
		s.Stats.Lines++
		fn(line, s.r.Line(), s.parser)
	}
	return nil
}
