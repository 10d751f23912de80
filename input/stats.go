package input

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unsafe"

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

type minuteKey struct {
	minute int64
	key    string
}

type minuteAddr struct {
	minute int64
	addr   netip.Addr // addresses stay values until saved: no string per message
}

// StatsCounter counts events for reports.
type StatsCounter struct {
	kinds      map[int64]*[8]int64 // by minute, by kind
	senders    map[minuteKey]counts
	clients    map[minuteAddr]counts
	saslUsers  map[minuteKey]counts
	lost       map[minuteKey]counts // key: the 10-second bucket of the duration
	pipelining map[int64]int64
	// the kinds of the last minute seen: most events are of the same one
	lastMinute int64
	lastKinds  *[8]int64
}

// NewStatsCounter returns an empty counter.
func NewStatsCounter() *StatsCounter {
	return &StatsCounter{kinds: map[int64]*[8]int64{}, senders: map[minuteKey]counts{}, clients: map[minuteAddr]counts{},
		saslUsers: map[minuteKey]counts{}, lost: map[minuteKey]counts{}, pipelining: map[int64]int64{}}
}

func add[K comparable](m map[K]counts, k K, size, rcpt int64) {
	c := m[k]
	c.messages++
	c.bytes += size
	c.recipients += rcpt
	m[k] = c
}

// Add counts an event.
func (s *StatsCounter) Add(e *parsers.Event) {
	minute := e.Time.Unix() / 60
	k := s.lastKinds
	if k == nil || minute != s.lastMinute {
		if k = s.kinds[minute]; k == nil {
			k = new([8]int64)
			s.kinds[minute] = k
		}
		s.lastMinute, s.lastKinds = minute, k
	}
	k[e.Kind&7]++
	switch e.Kind {
	case parsers.Accepted:
		size, rcpt := max(e.Size, 0), max(e.NRcpt, 0)
		if e.HasSender {
			sender := e.Sender
			if sender == "" {
				sender = "<>"
			}
			add(s.senders, minuteKey{minute, sender}, size, rcpt)
		}
		if e.ClientIP.IsValid() {
			add(s.clients, minuteAddr{minute, e.ClientIP}, size, rcpt)
		}
		if e.SASLUser != "" {
			add(s.saslUsers, minuteKey{minute, e.SASLUser}, size, rcpt)
		}
	case parsers.LostConnection:
		bucket := "unknown"
		if e.Duration > 0 {
			bucket = strconv.FormatInt(int64(e.Duration/(10*time.Second))*10, 10)
		}
		add(s.lost, minuteKey{minute, bucket}, 0, 0)
	case parsers.Rejected:
		if strings.HasPrefix(e.Reason, "improper command pipelining") {
			s.pipelining[minute]++
		}
	}
}

// Take returns the counts so far as records, appended to dst, and starts
// again from nothing.
func (s *StatsCounter) Take(dst []state.Stat) []state.Stat {
	for minute, k := range s.kinds {
		for _, kind := range parsers.Kinds() {
			if k[kind] > 0 {
				dst = append(dst, state.Stat{Minute: minute, KeyType: "kind", Key: kind.String(), Messages: k[kind]})
			}
		}
	}
	for typ, m := range map[string]map[minuteKey]counts{"sender": s.senders, "sasl_user": s.saslUsers, "lost": s.lost} {
		for k, c := range m {
			dst = append(dst, state.Stat{Minute: k.minute, KeyType: typ, Key: k.key, Messages: c.messages, Bytes: c.bytes, Recipients: c.recipients})
		}
	}
	// The addresses as text share one buffer: a string each was a third
	// of the allocations of a sendmail replay.
	text := make([]byte, 0, 16*len(s.clients))
	for k, c := range s.clients {
		at := len(text)
		text = k.addr.AppendTo(text) // a string made below keeps what it points at, if text moves
		addr := unsafe.String(unsafe.SliceData(text[at:]), len(text)-at)
		dst = append(dst, state.Stat{Minute: k.minute, KeyType: "client_ip", Key: addr, Messages: c.messages, Bytes: c.bytes, Recipients: c.recipients})
	}
	for minute, n := range s.pipelining {
		dst = append(dst, state.Stat{Minute: minute, KeyType: "pipelining", Messages: n})
	}
	clear(s.kinds)
	s.lastKinds = nil
	clear(s.senders)
	clear(s.clients)
	clear(s.saslUsers)
	clear(s.lost)
	clear(s.pipelining)
	return dst
}
