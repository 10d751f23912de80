package state

import (
	"cmp"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
)

// statTypes code the key types in the blob, in StatType order.
var statTypes = []string{"kind", "sender", "client_ip", "sasl_user", "lost", "pipelining"}

// StatType is a key type of the stats, as the blob codes it.
type StatType uint8

const (
	StatKind StatType = iota
	StatSender
	StatClientIP
	StatSASLUser
	StatLost
	StatPipelining
)

// Stats are per-minute counts for reports, encoded as the store saves them:
// records of varints — minute, key type (a StatType, or 255 and the name),
// key, messages, bytes, recipients — in runs of one minute each. They are
// written where they are counted, and a batch's runs are put in minute
// order when it is saved (Encoded): a reader sees each key's minutes in
// order (a report adds up a key's busiest minute as they come). Counted
// into runs rather than kept as Stat records, a sendmail replay's 662,000
// stats are 18 MB of bytes to copy instead of 42 MB of records holding
// pointers to sort and encode.
type Stats struct {
	data []byte
	runs []statsRun // in the order written
}

type statsRun struct {
	minute int64
	end    int // in data, after the run's last record
}

// Add appends a record.
func (s *Stats) Add(st Stat) {
	code := slices.Index(statTypes, st.KeyType)
	s.begin(st.Minute)
	if code < 0 {
		s.data = append(s.data, 255)
		s.data = binary.AppendUvarint(s.data, uint64(len(st.KeyType)))
		s.data = append(s.data, st.KeyType...)
	} else {
		s.data = append(s.data, byte(code))
	}
	s.data = binary.AppendUvarint(s.data, uint64(len(st.Key)))
	s.data = append(s.data, st.Key...)
	s.end(st.Minute, st.Messages, st.Bytes, st.Recipients)
}

// Append appends a key's counts of a minute.
func (s *Stats) Append(minute int64, typ StatType, key string, messages, bytes, recipients int64) {
	s.begin(minute)
	s.data = append(s.data, byte(typ))
	s.data = binary.AppendUvarint(s.data, uint64(len(key)))
	s.data = append(s.data, key...)
	s.end(minute, messages, bytes, recipients)
}

// AppendAddr appends a client address's counts of a minute, the address
// written as text.
func (s *Stats) AppendAddr(minute int64, addr netip.Addr, messages, bytes, recipients int64) {
	s.begin(minute)
	s.data = append(s.data, byte(StatClientIP), 0)
	at := len(s.data)
	s.data = addr.AppendTo(s.data)
	s.data[at-1] = byte(len(s.data) - at) // an address's text is shorter than 128: a varint of a byte
	s.end(minute, messages, bytes, recipients)
}

func (s *Stats) begin(minute int64) {
	s.data = binary.AppendVarint(s.data, minute)
}

func (s *Stats) end(minute, messages, bytes, recipients int64) {
	s.data = binary.AppendVarint(s.data, messages)
	s.data = binary.AppendVarint(s.data, bytes)
	s.data = binary.AppendVarint(s.data, recipients)
	if n := len(s.runs); n > 0 && s.runs[n-1].minute == minute {
		s.runs[n-1].end = len(s.data)
		return
	}
	s.runs = append(s.runs, statsRun{minute, len(s.data)})
}

// Take appends the records of o and empties it.
func (s *Stats) Take(o *Stats) {
	base := len(s.data)
	s.data = append(s.data, o.data...)
	for _, r := range o.runs {
		if n := len(s.runs); n > 0 && s.runs[n-1].minute == r.minute {
			s.runs[n-1].end = base + r.end
			continue
		}
		s.runs = append(s.runs, statsRun{r.minute, base + r.end})
	}
	o.Reset()
}

// Size is the records' size in bytes.
func (s *Stats) Size() int { return len(s.data) }

// Minutes returns the first and last minute of the records; ok is false
// when there are none.
func (s *Stats) Minutes() (first, last int64, ok bool) {
	if len(s.runs) == 0 {
		return 0, 0, false
	}
	first, last = s.runs[0].minute, s.runs[0].minute
	for _, r := range s.runs {
		first, last = min(first, r.minute), max(last, r.minute)
	}
	return first, last, true
}

// Encoded returns the records in minute order, as they are saved: the
// bytes as written when their runs are in order, as they are from one log.
func (s *Stats) Encoded() []byte {
	if slices.IsSortedFunc(s.runs, byRunMinute) {
		return s.data
	}
	order := make([]int32, len(s.runs))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return byRunMinute(s.runs[a], s.runs[b]) })
	buf := make([]byte, 0, len(s.data))
	for _, i := range order {
		start := 0
		if i > 0 {
			start = s.runs[i-1].end
		}
		buf = append(buf, s.data[start:s.runs[i].end]...)
	}
	return buf
}

func byRunMinute(a, b statsRun) int { return cmp.Compare(a.minute, b.minute) }

// Each calls fn for each record, in minute order.
func (s *Stats) Each(fn func(*Stat)) error { return DecodeStats(s.Encoded(), fn) }

// Reset empties s for reuse.
func (s *Stats) Reset() {
	s.data = s.data[:0]
	s.runs = s.runs[:0]
}

// StatsOf encodes stats as a batch saves them.
func StatsOf(stats ...Stat) Stats {
	var s Stats
	for _, st := range stats {
		s.Add(st)
	}
	return s
}

var errCorruptStats = errors.New("corrupt stats data")

// DecodeStats calls fn for each record of b, as Stats.Encoded wrote them.
func DecodeStats(b []byte, fn func(*Stat)) error {
	var st Stat
	varint := func() (int64, bool) {
		v, n := binary.Varint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	str := func() (string, bool) {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return "", false
		}
		s := string(b[n : n+int(l)])
		b = b[n+int(l):]
		return s, true
	}
	for len(b) > 0 {
		var ok bool
		if st.Minute, ok = varint(); !ok || len(b) == 0 {
			return errCorruptStats
		}
		code := b[0]
		b = b[1:]
		switch {
		case int(code) < len(statTypes):
			st.KeyType = statTypes[code]
		case code == 255:
			if st.KeyType, ok = str(); !ok {
				return errCorruptStats
			}
		default:
			return errCorruptStats
		}
		var ok1, ok2, ok3, ok4 bool
		st.Key, ok1 = str()
		st.Messages, ok2 = varint()
		st.Bytes, ok3 = varint()
		st.Recipients, ok4 = varint()
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return errCorruptStats
		}
		fn(&st)
	}
	return nil
}

// byMinute orders stats by minute; the order within a minute is no one's.
func byMinute(a, b Stat) int { return cmp.Compare(a.Minute, b.Minute) }
