package input

import (
	"time"

	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/state"
)

// Merger hands on the events of several sources in time order — the logs
// of several MTAs, or of several hosts, run as they happened — in both
// modes. Read to the end, the oldest waiting event goes next (the first
// source's on a tie). Followed, an event goes only once every other source
// has shown one at least as new, or has had nothing to read for longer
// than Delay: an idle log never holds the others back for longer than
// that. Catching up after downtime is thus a replay of what was missed,
// then live following.
//
// A Merger is used from one goroutine; each source reads in its own.
type Merger struct {
	// Delay bounds how long a followed source with nothing to read holds
	// back the others' newer events.
	Delay time.Duration
	// Now is the wall clock that idleness is measured by; nil is time.Now.
	Now func() time.Time
	// Publish keeps the events handed on from this host's own logs,
	// encoded, for TakeEvents: what a store shared by several hosts gives
	// the others (see RemoteSource).
	Publish bool

	srcs      []*Source
	published []byte
	wake      chan struct{}
	ready     bool // Next found nothing to hand on: Wake says when to try again
	qmail     qmailJoin
}

// NewMerger merges srcs, and starts their reading.
func NewMerger(srcs []*Source) *Merger {
	m := &Merger{wake: make(chan struct{}, 1)}
	for _, s := range srcs {
		m.Add(s)
	}
	return m
}

// Add merges one more source (a file that came to match a glob).
func (m *Merger) Add(s *Source) {
	m.srcs = append(m.srcs, s)
	if !s.finished && !s.started {
		s.start(m.wake)
	}
}

// Sources are the sources merged.
func (m *Merger) Sources() []*Source { return m.srcs }

// Wake receives when a source has sent something: time to call Next
// again.
func (m *Merger) Wake() <-chan struct{} { return m.wake }

func (m *Merger) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Next returns the next event, valid until the next call. When there is
// none to hand on yet, it returns nil and how long to wait at most before
// calling again (0: until Wake); done is set once every source is
// finished. qmail's two logs are joined on the way (see qmailJoin).
func (m *Merger) Next() (e *parsers.Event, wait time.Duration, done bool) {
	for {
		var from *Source
		e, from, wait, done = m.next()
		if e == nil || from.feed != nil {
			return e, wait, done // another host's: joined before it was published
		}
		if m.qmail.take(e) {
			if m.Publish {
				m.published = e.AppendBinary(m.published)
			}
			return e, wait, done
		}
	}
}

// TakeEvents appends the events of this host's logs handed on since the
// last call, encoded (see Publish): they go with the positions of the
// same moment.
func (m *Merger) TakeEvents(dst []byte) []byte {
	dst = append(dst, m.published...)
	m.published = m.published[:0]
	return dst
}

func (m *Merger) next() (e *parsers.Event, from *Source, wait time.Duration, done bool) {
	var best *Source
	var bestTime time.Time
	live, empty := 0, 0 // empty: live sources with no event waiting
	for _, s := range m.srcs {
		q := s.peek()
		if s.finished {
			continue
		}
		live++
		if q == nil {
			empty++
		} else if best == nil || q.ev.Time.Before(bestTime) {
			best, bestTime = s, q.ev.Time
		}
	}
	if best == nil {
		return nil, nil, 0, live == 0
	}
	if empty > 0 {
		now := time.Time{}
		for _, s := range m.srcs {
			if s == best || s.finished || s.head < s.queued() {
				continue
			}
			// s has nothing waiting: best goes if s has shown an event at
			// least as new, or has been idle long enough.
			if !s.newest.Before(bestTime) {
				continue
			}
			if !s.idle {
				return nil, nil, 0, false // reading: what it sends may be older
			}
			if now.IsZero() {
				now = m.now()
			}
			if left := s.idleSince.Add(m.Delay).Sub(now); left > 0 {
				if wait == 0 || left < wait {
					wait = left
				}
			}
		}
		if wait > 0 {
			return nil, nil, wait, false
		}
	}
	return best.pop(), best, 0, false
}

// Behind is how long the events waiting in the source have been read;
// zero when none is waiting. Call it from the merger's goroutine.
func (s *Source) Behind(now time.Time) time.Duration {
	if s.cur == nil || s.head == len(s.cur.events) {
		return 0
	}
	return now.Sub(s.cur.at)
}

// queued is how many events the current batch holds.
func (s *Source) queued() int {
	if s.cur == nil {
		return 0
	}
	return len(s.cur.events)
}

// peek returns the next event, or nil when none has been read yet (or the
// source is finished). It never waits.
func (s *Source) peek() *queued {
	if s.finished {
		return nil
	}
	for s.cur == nil || s.head == len(s.cur.events) {
		if s.cur != nil {
			s.finishBatch()
		}
		var b *batch
		var ok bool
		select {
		case b, ok = <-s.batches:
		default:
			if !s.o.Follow {
				// Read to the end, a source is never idle: wait for it.
				b, ok = <-s.batches
			} else {
				return nil
			}
		}
		if !ok {
			s.finished = true
			return nil
		}
		s.cur, s.head = b, 0
		if b.err != nil {
			s.err = b.err
		}
		s.idle = b.idle
		if b.idle {
			s.idleSince = b.at
		}
		if b.eof && len(b.events) == 0 {
			s.finishBatch()
			s.finished = true
			return nil
		}
	}
	return &s.cur.events[s.head]
}

// finishBatch notes that every event of the current batch ran: its lines
// are done.
func (s *Source) finishBatch() {
	b := s.cur
	if b.counted != nil {
		s.doneIDs = b.counted
	}
	if b.pos.Input != "" {
		s.done = b.pos
		s.done.Counted = s.doneIDs
	}
	if s.countedTo >= 0 {
		s.countRan(len(b.events)) // split by a save: the rest, here
	} else {
		s.doneStats.Take(&b.stats)
	}
	s.countedTo = -1
	s.curIDs, s.doneCut = s.curIDs[:0], false
	s.cur = nil
	select {
	case s.free <- b:
	default: // closed down
	}
}

// pop takes the waiting event (peek must have returned one).
func (s *Source) pop() *parsers.Event {
	q := &s.cur.events[s.head]
	s.head++
	if q.ev.Time.After(s.newest) {
		s.newest = q.ev.Time
	}
	if q.ev.Kind == parsers.Accepted && q.ev.QueueID != (parsers.QID{}) && s.cur.counted != nil {
		s.curIDs = append(s.curIDs, q.ev.QueueID) // a value: no allocation per message
	}
	if s.head < len(s.cur.events) && s.cur.events[s.head].line != q.line && s.cur.pos.Input != "" {
		// Every event of q's line ran: a position after it is exact.
		p := s.cur.pos
		p.Offset, p.Line = q.end, q.line
		p.Fingerprint = headPrint(p.Fingerprint) // the bytes before it are not at hand
		p.Counted = nil
		s.done = p
		s.doneCut = true
	}
	return &q.ev
}

// position is how far the source's effects have run: to the end of the
// current batch once its events all ran, else after the last line whose
// events all ran. Sources without positions (standard input) have none.
func (s *Source) position() (state.Position, bool) {
	if s.cur != nil && s.head == len(s.cur.events) {
		s.finishBatch()
	}
	if s.done.Input == "" {
		return state.Position{}, false
	}
	if s.cur != nil && s.ranStats != nil && s.head > 0 {
		s.countRan(s.head) // the stats of what ran go with the position
	}
	p := s.done
	if s.doneCut {
		// Inside a batch: the queue IDs counted are those at its start and
		// the accepted ones run since, newest first.
		ids := make([]string, 0, len(s.curIDs)+len(s.doneIDs))
		for i := len(s.curIDs) - 1; i >= 0; i-- {
			ids = append(ids, s.curIDs[i].String())
		}
		ids = append(ids, s.doneIDs...)
		p.Counted = ids[:min(len(ids), parsers.MaxCounted)]
	}
	return p, true
}

// countRan counts, in the merger's goroutine, the current batch's events
// up to end that are not counted yet: the batch's own stats, counted as
// it was read, are then dropped.
func (s *Source) countRan(end int) {
	from := max(s.countedTo, 0)
	for i := from; i < end; i++ {
		s.ranStats.Add(&s.cur.events[i].ev)
	}
	s.countedTo = end
}

// Positions are how far each source's effects have run, to be saved with
// the state they produced.
func (m *Merger) Positions(dst []state.Position) []state.Position {
	for _, s := range m.srcs {
		if p, ok := s.position(); ok {
			dst = append(dst, p)
		}
	}
	return dst
}

// TakeStats moves the stats of the events that ran since into dst.
func (m *Merger) TakeStats(dst *state.Stats) {
	for _, s := range m.srcs {
		dst.Take(&s.doneStats)
		if s.ranStats != nil {
			s.ranStats.Take(dst)
		}
	}
}

// Close stops every source.
func (m *Merger) Close() {
	for _, s := range m.srcs {
		s.Close()
	}
}
