package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/bombwatch/bombwatch/input"
	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/state"
)

// Source is one log being read: lines in, events out, in order.
type Source struct {
	Name   string
	Format string // the format used, after detection
	Stats  SourceStats

	r      *input.Reader
	abs    string // the path positions are saved under; "" for stdin
	parser parsers.Parser
	emitFn func(*parsers.Event)
	queue  []queued // events parsed and not yet run, oldest first
	head   int
	eof    bool
	err    error
	done   state.Position // after the last line whose events all ran
}

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
	return s, nil
}

func firstLine(head [][]byte) []byte {
	l := head[0]
	if len(l) > 80 {
		l = l[:80]
	}
	return bytes.ToValidUTF8(l, []byte("?"))
}

// Close closes the log.
func (s *Source) Close() error { return s.r.Close() }

// Err is the read error that ended the source early, if any.
func (s *Source) Err() error { return s.err }

func (s *Source) emit(e *parsers.Event) {
	s.Stats.Events[e.Kind&7]++
	s.queue = append(s.queue, queued{ev: *e, end: s.r.Offset(), line: s.r.Line()})
}

// peek parses lines until an event is waiting, and returns it, or nil at
// the end of the log.
func (s *Source) peek() *queued {
	for s.head == len(s.queue) {
		if s.eof {
			return nil
		}
		s.queue, s.head = s.queue[:0], 0
		line, err := s.r.Next()
		if err != nil {
			s.eof = true
			if !errors.Is(err, io.EOF) {
				s.err = err
			}
			s.Stats.Skipped = s.r.Skipped
			continue
		}
		s.Stats.Lines++
		if s.parser.Parse(line, s.r.Line(), s.emitFn) {
			s.Stats.Recognised++
		}
	}
	return &s.queue[s.head]
}

// pop takes the waiting event (peek must have returned one).
func (s *Source) pop() *parsers.Event {
	q := &s.queue[s.head]
	s.head++
	if s.head == len(s.queue) || s.queue[s.head].line != q.line {
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
	if s.head == len(s.queue) {
		return s.currentPosition(), true
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
// It returns the read error that ended the log early, if any.
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
