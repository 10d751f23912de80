package input

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/state"
)

// Reports read per-minute counts from the store, not events: a month of a
// busy relay in a few bytes per key and minute. They are counted where the
// lines are read — the reading goroutine of a Source — a batch at a time, so that the pipeline only hands them on: a
// key's minute may then come in several records, which the store's readers
// sum. Sender domains and client networks are summed from senders and
// addresses when a report is made: counting them here too would double
// what a message costs.

// counts is a key's minute.
type counts struct{ messages, bytes, recipients int64 }

// minuteCounts are a minute's counts. The keys' maps are made when a key
// of their type first comes.
type minuteCounts struct {
	minute     int64
	kinds      [8]int64
	senders    map[string]counts
	clients    map[netip.Addr]counts // addresses stay values until saved: no string per message
	saslUsers  map[string]counts
	lost       map[string]counts // key: the 10-second bucket of the duration
	pipelining int64
}

// StatsCounter counts events for reports.
type StatsCounter struct {
	minutes  map[int64]*minuteCounts
	last     *minuteCounts   // most events are of the minute before's
	spare    []*minuteCounts // emptied, for the next minutes
	inMinute []*minuteCounts // Take's, reused
}

// NewStatsCounter returns an empty counter.
func NewStatsCounter() *StatsCounter {
	return &StatsCounter{minutes: map[int64]*minuteCounts{}}
}

func add[K comparable](m *map[K]counts, k K, size, rcpt int64) {
	if *m == nil {
		*m = map[K]counts{}
	}
	c := (*m)[k]
	c.messages++
	c.bytes += size
	c.recipients += rcpt
	(*m)[k] = c
}

// Add counts an event.
func (s *StatsCounter) Add(e *parsers.Event) {
	minute := e.Time.Unix() / 60
	m := s.last
	if m == nil || m.minute != minute {
		if m = s.minutes[minute]; m == nil {
			if n := len(s.spare); n > 0 {
				m, s.spare = s.spare[n-1], s.spare[:n-1]
			} else {
				m = new(minuteCounts)
			}
			m.minute = minute
			s.minutes[minute] = m
		}
		s.last = m
	}
	m.kinds[e.Kind&7]++
	switch e.Kind {
	case parsers.Accepted:
		size, rcpt := max(e.Size, 0), max(e.NRcpt, 0)
		if e.HasSender {
			sender := e.Sender
			if sender == "" {
				sender = "<>"
			}
			add(&m.senders, sender, size, rcpt)
		}
		if e.ClientIP.IsValid() {
			add(&m.clients, e.ClientIP, size, rcpt)
		}
		if e.SASLUser != "" {
			add(&m.saslUsers, e.SASLUser, size, rcpt)
		}
	case parsers.LostConnection:
		bucket := "unknown"
		if e.Duration > 0 {
			bucket = strconv.FormatInt(int64(e.Duration/(10*time.Second))*10, 10)
		}
		add(&m.lost, bucket, 0, 0)
	case parsers.Rejected:
		if strings.HasPrefix(e.Reason, "improper command pipelining") {
			m.pipelining++
		}
	}
}

// Take moves the counts so far into dst, a minute at a time, and starts
// again from nothing.
func (s *StatsCounter) Take(dst *state.Stats) {
	minutes := s.inMinute[:0]
	for _, m := range s.minutes {
		minutes = append(minutes, m)
	}
	slices.SortFunc(minutes, func(a, b *minuteCounts) int { return cmp.Compare(a.minute, b.minute) })
	for _, m := range minutes {
		for _, kind := range parsers.Kinds() {
			if m.kinds[kind] > 0 {
				dst.Append(m.minute, state.StatKind, kind.String(), m.kinds[kind], 0, 0)
			}
		}
		for _, t := range [...]struct {
			typ state.StatType
			m   map[string]counts
		}{{state.StatSender, m.senders}, {state.StatSASLUser, m.saslUsers}, {state.StatLost, m.lost}} {
			for k, c := range t.m {
				dst.Append(m.minute, t.typ, k, c.messages, c.bytes, c.recipients)
			}
		}
		for addr, c := range m.clients {
			dst.AppendAddr(m.minute, addr, c.messages, c.bytes, c.recipients)
		}
		if m.pipelining > 0 {
			dst.Append(m.minute, state.StatPipelining, "", m.pipelining, 0, 0)
		}
		if len(s.spare) < maxSpareMinutes {
			m.reset()
			s.spare = append(s.spare, m)
		}
	}
	clear(minutes)
	s.inMinute = minutes[:0]
	clear(s.minutes)
	s.last = nil
}

// maxSpareMinutes bounds the emptied minutes kept for reuse: a batch of a
// quiet site's lines spans an hour or two (a sendmail replay's made 0.19
// allocations a line more when only four were kept), one read after a
// long pause any number.
const maxSpareMinutes = 1024

// reset empties m for another minute. A map grown large by a busy minute
// is let go rather than cleared: clearing costs its size, every batch.
func (m *minuteCounts) reset() {
	m.kinds, m.pipelining = [8]int64{}, 0
	m.senders = emptied(m.senders)
	m.clients = emptied(m.clients)
	m.saslUsers = emptied(m.saslUsers)
	m.lost = emptied(m.lost)
}

func emptied[K comparable](m map[K]counts) map[K]counts {
	if len(m) > 4096 {
		return nil
	}
	clear(m)
	return m
}
