package state

import (
	"cmp"
	"encoding/binary"
	"errors"
	"net/netip"
	"unsafe"
)

// Segment is the windows a batch saves, encoded in the order they were
// added: a store keeps them as they are, in chunks of a few MiB, and hands
// them back in that order (Store.Windows), a later window of a rule and key
// replacing an earlier one and a Delete forgetting it. Encoding in the
// pipeline costs no allocation per window, and a store writes a chunk of
// thousands of windows as one value instead of a row each.
//
// A chunk is a run of records: the window's name (an index into the names
// seen earlier in the chunk, or 0 and the name), its key, then 0 for a
// Delete or the window (AppendWindow).
type Segment struct {
	// ChunkSize is the size past which a chunk is full (0: 4 MiB). A
	// chunk is made with room for it and 64 KiB more: filled, not grown.
	ChunkSize int
	chunks    [][]byte
	names     map[string]uint64 // of the last chunk
	// lastName and lastRef are the last window's name in the last chunk:
	// most windows come by rule, a run of one name each.
	lastName string
	lastRef  uint64
	n        int
}

// segmentChunk is the size past which a segment starts a new chunk, but
// for one that says otherwise (ChunkSize).
const segmentChunk = 4 << 20

// Add encodes a window. Its slices are read during the call only.
func (s *Segment) Add(w *Window) {
	chunk := cmp.Or(s.ChunkSize, segmentChunk)
	if len(s.chunks) == 0 || len(s.chunks[len(s.chunks)-1]) >= chunk {
		if n := len(s.chunks); n < cap(s.chunks) && cap(s.chunks[:n+1][n]) > 0 {
			s.chunks = s.chunks[:n+1] // the room Reset kept
			s.chunks[n] = s.chunks[n][:0]
		} else {
			// The first small, for a batch of a few windows; the next
			// are filled, whole, by a batch of millions (a full one):
			// made at their size, not grown to it.
			size := chunk + 64<<10
			if n == 0 && s.ChunkSize == 0 {
				size = 64 << 10
			}
			s.chunks = append(s.chunks, make([]byte, 0, size))
		}
		if s.names == nil {
			s.names = map[string]uint64{}
		}
		clear(s.names)
		s.lastRef = 0
	}
	buf := s.chunks[len(s.chunks)-1]
	if s.lastRef != 0 && w.Rule == s.lastName {
		buf = binary.AppendUvarint(buf, s.lastRef)
	} else if i, ok := s.names[w.Rule]; ok {
		buf = binary.AppendUvarint(buf, i)
		s.lastName, s.lastRef = w.Rule, i
	} else {
		i = uint64(len(s.names) + 1)
		s.names[w.Rule] = i
		s.lastName, s.lastRef = w.Rule, i
		buf = binary.AppendUvarint(buf, 0)
		buf = binary.AppendUvarint(buf, uint64(len(w.Rule)))
		buf = append(buf, w.Rule...)
	}
	buf = binary.AppendUvarint(buf, uint64(len(w.Key)))
	buf = append(buf, w.Key...)
	if w.Delete {
		buf = append(buf, 0)
	} else {
		buf = AppendWindow(buf, w)
	}
	s.chunks[len(s.chunks)-1] = buf
	s.n++
}

// Len is how many windows were added.
func (s *Segment) Len() int { return s.n }

// Chunks are the encoded windows, in order; each decodes on its own
// (DecodeChunk).
func (s *Segment) Chunks() [][]byte { return s.chunks }

// Size is how many bytes the segment's chunks hold.
func (s *Segment) Size() int {
	n := 0
	for _, c := range s.chunks {
		n += len(c)
	}
	return n
}

// Reset empties the segment for reuse, keeping its first chunk's room: a
// batch's windows grow it to their size once, not again in every batch.
func (s *Segment) Reset() {
	if len(s.chunks) > 0 {
		clear(s.chunks[1:]) // a full batch's chunks go
		s.chunks = s.chunks[:0]
	}
	s.n = 0
}

// DecodeChunk calls fn with every window of a chunk, in order. The
// Window, its Key and its slices are only valid during the call: a Key
// kept is cloned (strings.Clone).
func DecodeChunk(b []byte, fn func(*Window)) error {
	var names []string
	var w Window
	for len(b) > 0 {
		ref, k := binary.Uvarint(b)
		if k <= 0 {
			return errCorrupt
		}
		b = b[k:]
		var name string
		if ref == 0 {
			n, k := binary.Uvarint(b)
			if k <= 0 || uint64(len(b)-k) < n {
				return errCorrupt
			}
			name = string(b[k : k+int(n)])
			names = append(names, name)
			b = b[k+int(n):]
		} else if ref <= uint64(len(names)) {
			name = names[ref-1]
		} else {
			return errCorrupt
		}
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return errCorrupt
		}
		// The key is the chunk's bytes: no allocation for each of millions.
		key := unsafe.String(unsafe.SliceData(b[k:]), int(n))
		b = b[k+int(n):]
		if len(b) == 0 {
			return errCorrupt
		}
		w = Window{Rule: name, Key: key, Times: w.Times[:0], Tags: w.Tags[:0], Addrs: w.Addrs[:0]}
		if b[0] == 0 {
			w.Delete, w.Times, w.Tags, w.Addrs = true, nil, nil, nil
			b = b[1:]
		} else {
			rest, err := decodeWindow(b, &w)
			if err != nil {
				return err
			}
			b = rest
		}
		fn(&w)
	}
	return nil
}

var errCorrupt = errors.New("corrupt window data")

// AppendWindow writes a window: a version byte (1), then the times
// (appendTimes), then flags (1: amounts follow, 2: dates follow, 4: tags
// follow, 8: addresses follow) and the amounts and dates as varints, the
// tags as uvarints and the addresses as a length byte and their bytes,
// then the offset and the touched time.
func AppendWindow(buf []byte, w *Window) []byte {
	buf = append(buf, 1)
	buf = binary.AppendUvarint(buf, uint64(len(w.Times)))
	buf = appendTimes(buf, w.Times)
	flags := byte(0)
	if w.Amounts != nil {
		flags |= 1
	}
	if w.Dates != nil {
		flags |= 2
	}
	if len(w.Tags) == len(w.Times) && len(w.Tags) > 0 {
		flags |= 4
	}
	if len(w.Addrs) == len(w.Times) && len(w.Addrs) > 0 {
		flags |= 8
	}
	buf = append(buf, flags)
	for _, a := range w.Amounts {
		buf = binary.AppendVarint(buf, a)
	}
	for _, d := range w.Dates {
		buf = binary.AppendVarint(buf, d)
	}
	if flags&4 != 0 {
		for _, t := range w.Tags {
			buf = binary.AppendUvarint(buf, t)
		}
	}
	if flags&8 != 0 {
		for _, a := range w.Addrs {
			b := a.AsSlice()
			buf = append(append(buf, byte(len(b))), b...)
		}
	}
	buf = binary.AppendVarint(buf, w.Offset)
	return binary.AppendVarint(buf, w.Touched)
}

func decodeWindow(b []byte, w *Window) ([]byte, error) {
	if len(b) < 1 || b[0] != 1 {
		return nil, errCorrupt
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > 1<<20 {
		return nil, errCorrupt
	}
	b = b[k:]
	w.Times = w.Times[:0]
	for i := uint64(0); i < n; i++ {
		var v int64
		if i == 0 {
			v, k = binary.Varint(b)
		} else {
			var d uint64
			d, k = binary.Uvarint(b)
			v = w.Times[i-1] + int64(d)
		}
		if k <= 0 {
			return nil, errCorrupt
		}
		w.Times, b = append(w.Times, v), b[k:]
	}
	if len(b) < 1 {
		return nil, errCorrupt
	}
	flags := b[0]
	b = b[1:]
	read := func() (int64, bool) {
		v, k := binary.Varint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return v, true
	}
	for _, set := range []struct {
		bit byte
		dst *[]int64
	}{{1, &w.Amounts}, {2, &w.Dates}} {
		if flags&set.bit == 0 {
			continue
		}
		*set.dst = make([]int64, n)
		for i := range *set.dst {
			v, ok := read()
			if !ok {
				return nil, errCorrupt
			}
			(*set.dst)[i] = v
		}
	}
	w.Tags = w.Tags[:0]
	if flags&4 != 0 {
		for range n {
			v, k := binary.Uvarint(b)
			if k <= 0 {
				return nil, errCorrupt
			}
			w.Tags, b = append(w.Tags, v), b[k:]
		}
	} else {
		w.Tags = nil
	}
	w.Addrs = w.Addrs[:0]
	if flags&8 != 0 {
		for range n {
			if len(b) < 1 || len(b) < 1+int(b[0]) {
				return nil, errCorrupt
			}
			a, ok := netip.AddrFromSlice(b[1 : 1+int(b[0])])
			if !ok {
				return nil, errCorrupt
			}
			w.Addrs, b = append(w.Addrs, a), b[1+int(b[0]):]
		}
	} else {
		w.Addrs = nil
	}
	var ok1, ok2 bool
	w.Offset, ok1 = read()
	w.Touched, ok2 = read()
	if !ok1 || !ok2 {
		return nil, errCorrupt
	}
	return b, nil
}

// appendTimes writes ascending times compactly: the first as a varint,
// each next as the uvarint step from the one before.
func appendTimes(buf []byte, times []int64) []byte {
	prev := int64(0)
	for i, t := range times {
		if i == 0 {
			buf = binary.AppendVarint(buf, t)
		} else {
			buf = binary.AppendUvarint(buf, uint64(max(t-prev, 0)))
		}
		prev = t
	}
	return buf
}

// DecodeWindow reads a window AppendWindow wrote into w: what a store
// that keeps a row per window keeps.
func DecodeWindow(b []byte, w *Window) error {
	rest, err := decodeWindow(b, w)
	if err == nil && len(rest) != 0 {
		err = errCorrupt
	}
	return err
}
