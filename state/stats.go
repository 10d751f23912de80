package state

import (
	"cmp"
	"encoding/binary"
	"errors"
	"slices"
)

// statTypes code the key types in the blob.
var statTypes = []string{"kind", "sender", "client_ip", "sasl_user", "lost", "pipelining"}

// EncodeStats writes stats as varints: minute, key type (an index of
// statTypes, or 255 and the name), key, messages, bytes, recipients. They
// are written in minute order, so that a reader sees each key's minutes in
// order (a report adds up a key's busiest minute as they come).
func EncodeStats(stats []Stat) []byte {
	if !slices.IsSortedFunc(stats, byMinute) {
		slices.SortFunc(stats, byMinute)
	}
	size := 0
	for i := range stats {
		size += 24 + len(stats[i].Key) // room for the usual: a minute of 4 bytes, a type, a length, counts of a few
	}
	buf := make([]byte, 0, size)
	for _, st := range stats {
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
