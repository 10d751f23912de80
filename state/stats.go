package state

import (
	"cmp"
	"encoding/binary"
	"errors"
	"math"
	"slices"
)

// statTypes code the key types in the blob.
var statTypes = []string{"kind", "sender", "client_ip", "sasl_user", "lost", "pipelining"}

// EncodeStats writes stats as varints: minute, key type (an index of
// statTypes, or 255 and the name), key, messages, bytes, recipients. They
// are written in minute order, so that a reader sees each key's minutes in
// order (a report adds up a key's busiest minute as they come).
func EncodeStats(stats []Stat) []byte {
	size := 0
	for i := range stats {
		size += 24 + len(stats[i].Key) // room for the usual: a minute of 4 bytes, a type, a length, counts of a few
	}
	buf := make([]byte, 0, size)
	for _, i := range minuteOrder(stats) {
		st := &stats[i]
		buf = binary.AppendVarint(buf, st.Minute)
		code := slices.Index(statTypes, st.KeyType)
		if code < 0 {
			buf = append(buf, 255)
			buf = binary.AppendUvarint(buf, uint64(len(st.KeyType)))
			buf = append(buf, st.KeyType...)
		} else {
			buf = append(buf, byte(code))
		}
		buf = binary.AppendUvarint(buf, uint64(len(st.Key)))
		buf = append(buf, st.Key...)
		buf = binary.AppendVarint(buf, st.Messages)
		buf = binary.AppendVarint(buf, st.Bytes)
		buf = binary.AppendVarint(buf, st.Recipients)
	}
	return buf
}

// minuteOrder returns the indexes of stats in minute order. A batch's stats
// span a few minutes, in the order of the counters' maps: counted into
// their minutes, not sorted by comparison, which moved their 64-byte
// records about for 7% of a sendmail replay's CPU.
func minuteOrder(stats []Stat) []int32 {
	order := make([]int32, len(stats))
	if len(stats) == 0 {
		return order
	}
	lo, hi := stats[0].Minute, stats[0].Minute
	for i := range stats {
		lo, hi = min(lo, stats[i].Minute), max(hi, stats[i].Minute)
	}
	if hi-lo >= maxCountedMinutes || len(stats) > math.MaxInt32 {
		for i := range order {
			order[i] = int32(i)
		}
		slices.SortFunc(order, func(a, b int32) int { return cmp.Compare(stats[a].Minute, stats[b].Minute) })
		return order
	}
	next := make([]int32, hi-lo+1) // by minute: where its next index goes
	for i := range stats {
		next[stats[i].Minute-lo]++
	}
	at := int32(0)
	for m, n := range next {
		next[m], at = at, at+n
	}
	for i := range stats {
		m := stats[i].Minute - lo
		order[next[m]] = int32(i)
		next[m]++
	}
	return order
}

// maxCountedMinutes bounds the minutes minuteOrder counts into (a table of
// 4 bytes each); stats spread wider, from logs read after a long pause, are
// sorted.
const maxCountedMinutes = 1 << 16

var errCorruptStats = errors.New("corrupt stats data")

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
