package input

import (
	"errors"
	"log/slog"
	"time"

	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/state"
)

// Feed reads another host's events from a store shared by several hosts:
// fn is called with each run of events the host published (encoded by
// parsers.Event.AppendBinary, one after the other), in the order
// published, from the one numbered from on. The numbers only grow.
type Feed func(from int64, fn func(seq int64, events []byte) error) error

// RemotePrefix starts the name, and the saved position's input, of
// another host's events: "host:mx2".
const RemotePrefix = "host:"

// RemoteSource is another host's events, read from a shared store, to be
// merged with this host's own logs (see Merger): every host runs every
// host's events in time order, so all count the same windows. Its
// position is the run of events (Offset) and how many of its events ran
// (Line), saved with what they produced, like a file's: a restart neither
// loses nor repeats one. The feed is read every poll, and at once when
// wake receives (a notice that the host published).
func RemoteSource(host string, feed Feed, wake <-chan struct{}, poll time.Duration, o Options) *Source {
	name := RemotePrefix + host
	s := &Source{Name: name, Format: "remote", spec: Spec{Path: name, Poll: poll}, o: o, log: o.Log, abs: name,
		feed: feed, notices: wake}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.countedTo = -1
	if pos, ok := o.Positions[name]; ok {
		s.done = pos
	} else {
		s.done = state.Position{Input: name}
	}
	return s
}

// Remote reports whether the source is another host's events.
func (s *Source) Remote() bool { return s.feed != nil }

var errQuit = errors.New("source closed")

// readRemote is the reading goroutine of another host's events.
func (s *Source) readRemote() {
	defer close(s.batches)
	poll := s.spec.Poll
	if poll <= 0 {
		poll = time.Second
	}
	timer := time.NewTicker(poll)
	defer timer.Stop()
	if !s.next() {
		return
	}
	from, skip := s.done.Offset, s.done.Line // the run saved, and how many of its events ran
	sentIdle := false
	var dec parsers.Decoder
	var failed errorLimiter
	for {
		err := s.feed(from, func(seq int64, data []byte) error {
			n := int64(0)
			for len(data) > 0 {
				s.filling.events = append(s.filling.events, queued{})
				q := &s.filling.events[len(s.filling.events)-1]
				rest, err := dec.Decode(data, &q.ev)
				if err != nil {
					// A run this build cannot read (written by a newer
					// one): what it decoded counts, the rest is skipped.
					s.filling.events = s.filling.events[:len(s.filling.events)-1]
					s.log.Error("input: another host's events cannot be read; skipping the rest of their run", "host", s.Name, "run", seq, "err", err)
					break
				}
				data = rest
				n++
				if seq == from && n <= skip {
					s.filling.events = s.filling.events[:len(s.filling.events)-1]
					continue
				}
				q.end, q.line = seq, n
				s.Stats.Lines++
				s.Stats.Recognised++
				s.Stats.Events[q.ev.Kind&7]++
			}
			from, skip = seq+1, 0
			if len(s.filling.events) == 0 {
				return nil
			}
			s.filling.pos = state.Position{Input: s.abs, Offset: seq, Line: n}
			sentIdle = false
			if !s.send() || !s.next() {
				return errQuit
			}
			return nil
		})
		if errors.Is(err, errQuit) {
			return
		}
		if err != nil {
			failed.log(s.log, s.o.now(), "input: another host's events", "host", s.Name, "err", err)
		}
		if !sentIdle {
			s.filling.idle = true
			if !s.send() || !s.next() {
				return
			}
			sentIdle = true
		}
		select {
		case <-s.quit:
			return
		case <-s.notices:
		case <-timer.C:
		}
	}
}
