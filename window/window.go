package window

import (
	"time"
)

// maxBuckets is how many parts of a window a key's events are told apart
// in: the window's resolution is per/maxBuckets (see Resolution), and a
// key keeps at most maxBuckets+1 entries whatever its traffic.
const maxBuckets = 4096

// Window is an exact sliding-window sum per key, at its resolution. It is
// not safe for concurrent use.
//
// Its memory is what a key needs, without a pointer per key: keys are in
// a keyTable, and a key with at most one entry — most keys, when an
// attacker makes a new one per message — is one slot of a slice, with no
// allocation of its own. A key with more entries has a series besides.
type Window struct {
	limit int64
	per   time.Duration
	res   int64 // ns; per is a multiple of it
	keys  *keyTable
	slots pages[slot]   // by key index
	more  pages[series] // by slot.more-1: the keys with more than one entry
	spare []int32       // indexes of more that are free
	dirty []int32       // key indexes changed since the last Flush
	gone  []string      // keys forgotten since the last Flush
	last  int32         // the key of the last Add that recorded an entry, for Tag; -1: none
}

// slot is one key. While more is 0 the key has at most one entry: at t,
// of amount sum, tagged tag (has tells whether it has it). Otherwise its
// entries are more[more-1], and sum is theirs.
type slot struct {
	t       int64
	touched int64 // the newest event, or when the key was forgiven
	sum     int64 // of the kept entries
	tag     uint64
	more    int32
	flags   uint8
}

const (
	has   = 1 << iota // a slot without more has its one entry
	dirty             // changed since the last Flush
	// saved: the store holds the key's window, saved by a Flush or
	// restored. A key never saved is forgotten without a word to the
	// store: most keys of a flood live and go between two saves, and
	// saving that each was gone was 87% of the windows a sendmail replay
	// wrote (985,000 of 1,134,000).
	saved
)

// series is a key's entries when it has more than one, oldest first from
// head.
type series struct {
	times   []int64
	amounts []int64 // nil while every amount is 1
	// tags are what the caller tagged each entry's first event with
	// (Tag): nil while none was.
	tags   []uint64
	head   int
	offset int64 // forgiveness: added to the sum until the key is idle
}

// New returns a Window of length per for sums compared with limit.
func New(limit int64, per time.Duration) *Window {
	return &Window{limit: max(limit, 0), per: per, res: int64(Resolution(per)), keys: newKeyTable(), last: -1}
}

// Resolution is how finely a window of length per tells event times apart:
// events in one interval of it are one entry, at the interval's start, and
// a key keeps at most 4097 entries. It divides per into at most 4096
// intervals, and is chosen so that whole seconds are on its grid — a
// fraction 1/m of a second for windows up to 4096 s, a whole number of
// seconds for longer ones: 15.625 ms for a minute, 200 ms for 10 minutes,
// 1 s for an hour, 24 s for a day. The sum over (t-per, t] is exact for
// times on the grid: for windows up to 4096 s, logs with whole-second
// stamps are measured exactly, and so are the times at which a block is
// released; a finer stamp counts at the start of its interval. The grid
// starts at the Unix epoch.
func Resolution(per time.Duration) time.Duration {
	if per <= 0 {
		return 1
	}
	if per%time.Second == 0 {
		secs := int64(per / time.Second)
		if secs <= maxBuckets {
			// The most parts of a second, dividing it in whole
			// nanoseconds, that keep the window within maxBuckets.
			best := int64(1)
			for m := int64(1); m*secs <= maxBuckets; m++ {
				if int64(time.Second)%m == 0 {
					best = m
				}
			}
			return time.Second / time.Duration(best)
		}
		for s := (secs + maxBuckets - 1) / maxBuckets; ; s++ {
			if secs%s == 0 {
				return time.Duration(s) * time.Second
			}
		}
	}
	for k := int64(maxBuckets); k > 1; k-- {
		if int64(per)%k == 0 {
			return time.Duration(int64(per) / k)
		}
	}
	return per
}

// floor is t on the resolution's grid.
func (w *Window) floor(t int64) int64 { return t - t%w.res }

// Limit and Per return the parameters the Window was made with; Len the
// number of keys it holds.
func (w *Window) Limit() int64       { return w.limit }
func (w *Window) Per() time.Duration { return w.per }
func (w *Window) Len() int           { return w.keys.len() }

// Add records an event of key at t with the given amount (1 for a count)
// and returns the key's measure: the sum over (t-per, t], plus its
// forgiveness offset, with times on the resolution's grid. The measure is
// exact while it is at most the limit, and when it first goes above it;
// above the limit it may be reported lower than it is, but never at or
// under the limit.
//
// Events must come in time order per key. An event older than the key's
// newest (a clock stepped back, or lines of two logs slightly out of order)
// is counted at the key's newest time, so it is neither lost nor able to
// shrink the window.
func (w *Window) Add(key []byte, t time.Time, amount int64) int64 {
	return w.AddUpTo(key, t, amount, w.limit)
}

// AddUpTo is Add for a key whose limit is limit (at most the window's):
// the measure is exact up to it, and the key keeps no more than that
// needs — an adapted limit costs a key only what its own limit needs.
func (w *Window) AddUpTo(key []byte, t time.Time, amount, limit int64) int64 {
	idx, added := w.keys.add(key)
	if added {
		w.newSlot(idx)
	}
	s := w.slots.At(idx)
	now := max(w.floor(t.UnixNano()), s.touched)
	w.expire(idx, now-int64(w.per))
	s.touched = now
	w.last = -1
	if amount > 0 {
		w.push(idx, now, amount)
		if s.more != 0 {
			w.trim(idx, min(limit, w.limit))
		}
		w.last = idx
	}
	w.markDirty(idx)
	return s.sum + w.offset(s)
}

// newSlot makes idx a new key's.
func (w *Window) newSlot(idx int32) {
	if idx == w.slots.Len() {
		w.slots.Add()
	} else {
		*w.slots.At(idx) = slot{}
	}
}

func (w *Window) offset(s *slot) int64 {
	if s.more == 0 {
		return 0
	}
	return w.more.At(s.more - 1).offset
}

// Tag tags the event the last Add recorded with tag (not 0): where it was
// logged, for the pipeline. An entry keeps the tag of its first event.
// Tags cost 8 bytes an entry, and are kept and saved with the entries.
func (w *Window) Tag(tag uint64) {
	if w.last < 0 || tag == 0 {
		return
	}
	s := w.slots.At(w.last)
	if s.more == 0 {
		if s.tag == 0 {
			s.tag = tag
		}
		return
	}
	m := w.more.At(s.more - 1)
	n := len(m.times)
	if m.tags == nil { // from now on as long as times (push)
		m.tags = make([]uint64, n, cap(m.times))
	}
	if m.tags[n-1] == 0 {
		m.tags[n-1] = tag
	}
}

// Entry is one kept entry of a key: the events of one interval of the
// resolution, from its first; a Burst's event, with its Date: header.
type Entry struct {
	Time   time.Time
	Amount int64
	Tag    uint64
	Date   time.Time // Burst only; zero when unknown
}

// each calls fn with the key's kept entries, oldest first; fn returns
// false to stop.
func (w *Window) each(s *slot, fn func(t, amount int64, tag uint64) bool) {
	if s.more == 0 {
		if s.flags&has != 0 {
			fn(s.t, s.sum, s.tag)
		}
		return
	}
	m := w.more.At(s.more - 1)
	for i := m.head; i < len(m.times); i++ {
		if !fn(m.times[i], m.amount(i), m.tag(i)) {
			return
		}
	}
}

// slotOf is key's slot, or nil.
func (w *Window) slotOf(key string) *slot {
	idx := w.keys.find([]byte(key))
	if idx < 0 {
		return nil
	}
	return w.slots.At(idx)
}

// Entries returns the key's kept entries in (t-per, t], oldest first:
// those whose sum the measure is, up to the limit and one more.
func (w *Window) Entries(key string, t time.Time) []Entry {
	s := w.slotOf(key)
	if s == nil {
		return nil
	}
	since := w.floor(t.UnixNano()) - int64(w.per)
	var out []Entry
	w.each(s, func(at, amount int64, tag uint64) bool {
		if at > since {
			out = append(out, Entry{Time: time.Unix(0, at).UTC(), Amount: amount, Tag: tag})
		}
		return true
	})
	return out
}

func (m *series) tag(i int) uint64 {
	if i < len(m.tags) {
		return m.tags[i]
	}
	return 0
}

// Value returns the key's measure at t without adding an event.
func (w *Window) Value(key string, t time.Time) int64 {
	s := w.slotOf(key)
	if s == nil {
		return 0
	}
	since := w.floor(t.UnixNano()) - int64(w.per)
	sum := s.sum
	w.each(s, func(at, amount int64, _ uint64) bool {
		if at > since {
			return false
		}
		sum -= amount
		return true
	})
	if sum == 0 && s.touched <= since {
		return 0 // idle: the offset has lapsed
	}
	return sum + w.offset(s)
}

// Below returns when the key's measure falls to the limit or under if no
// further event comes: the end of a block that lifts when the key is
// "accepted again". It returns false when the measure is not above it.
func (w *Window) Below(key string) (time.Time, bool) {
	s := w.slotOf(key)
	if s == nil || s.sum+w.offset(s) <= w.limit {
		return time.Time{}, false
	}
	// Dropping events oldest first, find the one whose leaving brings the
	// measure down to the limit: at its time plus per.
	sum := s.sum + w.offset(s)
	var below time.Time
	w.each(s, func(at, amount int64, _ uint64) bool {
		sum -= amount
		if sum <= w.limit {
			below = time.Unix(0, at+int64(w.per))
			return false
		}
		return true
	})
	return below, !below.IsZero() // zero: the offset alone keeps it above: cannot be
}

// Forgive clears the key's events and sets its measure to -n at t, from
// which the next events count up: smtp-dos-detector's behind counter. The
// offset lapses when the key is idle for a whole window.
func (w *Window) Forgive(key string, n int64, t time.Time) {
	idx, added := w.keys.add([]byte(key))
	if added {
		w.newSlot(idx)
	}
	s := w.slots.At(idx)
	m := w.series(idx)
	m.times, m.amounts, m.tags, m.head = m.times[:0], nil, nil, 0
	s.sum, s.flags = 0, s.flags&^has
	m.offset = -n
	s.touched = max(s.touched, w.floor(t.UnixNano()))
	w.markDirty(idx)
}

// series gives the key at idx a series, holding its entry if it had one.
func (w *Window) series(idx int32) *series {
	s := w.slots.At(idx)
	if s.more == 0 {
		var i int32
		if n := len(w.spare); n > 0 {
			i, w.spare = w.spare[n-1], w.spare[:n-1]
		} else {
			i = w.more.Add()
		}
		s = w.slots.At(idx)
		m := w.more.At(i)
		// A spare series keeps its slices' room: a key that goes from one
		// entry to two and back costs no allocation each time.
		m.times, m.head, m.offset = m.times[:0], 0, 0
		if m.amounts != nil {
			m.amounts = m.amounts[:0]
		}
		if m.tags != nil {
			m.tags = m.tags[:0]
		}
		if s.flags&has != 0 {
			m.times = append(m.times, s.t)
			if m.amounts != nil {
				m.amounts = append(m.amounts, s.sum)
			} else if s.sum != 1 {
				m.amountsOrOnes()[0] = s.sum
			}
			if m.tags != nil {
				m.tags = append(m.tags, s.tag)
			} else if s.tag != 0 {
				m.tags = append(make([]uint64, 0, cap(m.times)), s.tag)
			}
		}
		s.more, s.flags, s.tag = i+1, s.flags&^has, 0
	}
	return w.more.At(s.more - 1)
}

// single takes the key at idx back to a slot alone, when its series holds
// one entry or none and no offset: memory follows what is kept.
func (w *Window) single(idx int32) {
	s := w.slots.At(idx)
	m := w.more.At(s.more - 1)
	if m.len() > 1 || m.offset != 0 {
		return
	}
	s.flags &^= has
	if m.len() == 1 {
		s.t, s.tag, s.flags = m.times[m.head], m.tag(m.head), s.flags|has
	}
	w.spare = append(w.spare, s.more-1)
	s.more = 0
}

func (w *Window) markDirty(idx int32) {
	if s := w.slots.At(idx); s.flags&dirty == 0 {
		s.flags |= dirty
		w.dirty = append(w.dirty, idx)
	}
}

func (m *series) len() int { return len(m.times) - m.head }

func (m *series) amount(i int) int64 {
	if m.amounts == nil {
		return 1
	}
	return m.amounts[i]
}

// push adds an event at t, which is at or after the newest: one at the
// newest's time adds to it, so that a key holds one entry per interval of
// the resolution.
func (w *Window) push(idx int32, t, amount int64) {
	s := w.slots.At(idx)
	if s.more == 0 {
		switch {
		case s.flags&has == 0:
			s.t, s.sum, s.tag, s.flags = t, amount, 0, s.flags|has
			return
		case s.t == t:
			s.sum += amount
			return
		}
	}
	m := w.series(idx)
	s = w.slots.At(idx)
	if n := len(m.times); n > m.head && m.times[n-1] == t {
		m.amountsOrOnes()[n-1] += amount
		s.sum += amount
		return
	}
	if amount != 1 {
		m.amountsOrOnes()
	}
	m.times = append(m.times, t)
	if m.amounts != nil {
		m.amounts = append(m.amounts, amount)
	}
	if m.tags != nil {
		m.tags = append(m.tags, 0)
	}
	s.sum += amount
}

// expire drops the key's events at or before since; an idle key's offset
// lapses.
func (w *Window) expire(idx int32, since int64) {
	s := w.slots.At(idx)
	if s.more == 0 {
		if s.flags&has != 0 && s.t <= since {
			s.flags &^= has
			s.sum, s.tag = 0, 0
		}
		return
	}
	m := w.more.At(s.more - 1)
	for m.head < len(m.times) && m.times[m.head] <= since {
		s.sum -= m.amount(m.head)
		m.head++
	}
	if m.head == len(m.times) {
		m.times, m.head, s.sum = m.times[:0], 0, 0
		if m.amounts != nil {
			m.amounts = m.amounts[:0]
		}
		if m.tags != nil {
			m.tags = m.tags[:0]
		}
		if s.touched <= since {
			m.offset = 0
		}
	}
	m.compact()
}

// trim drops the oldest events that are not needed: while the newer ones
// alone are above the limit, the oldest can only add to a sum already
// known to be above it, and leave the window before them.
func (w *Window) trim(idx int32, limit int64) {
	s := w.slots.At(idx)
	m := w.more.At(s.more - 1)
	for m.len() > 1 && s.sum-m.amount(m.head)+m.offset > limit {
		s.sum -= m.amount(m.head)
		m.head++
	}
	m.compact()
}

func (m *series) amountsOrOnes() []int64 {
	if m.amounts == nil {
		m.amounts = make([]int64, len(m.times), cap(m.times))
		for i := range m.amounts {
			m.amounts[i] = 1
		}
	}
	return m.amounts
}

// compact moves the kept events to the front when the dropped ones fill
// half the slice, so that memory follows what is kept.
func (m *series) compact() {
	if m.head == 0 || m.head < len(m.times)/2 {
		return
	}
	n := copy(m.times, m.times[m.head:])
	m.times = m.times[:n]
	if m.amounts != nil {
		copy(m.amounts, m.amounts[m.head:])
		m.amounts = m.amounts[:n]
	}
	if m.tags != nil {
		copy(m.tags, m.tags[m.head:])
		m.tags = m.tags[:n]
	}
	m.head = 0
}

// forget drops the key at idx.
func (w *Window) forget(idx int32) {
	s := w.slots.At(idx)
	if s.flags&saved != 0 {
		w.gone = append(w.gone, w.keys.key(idx))
	}
	if s.more != 0 {
		w.spare = append(w.spare, s.more-1)
	}
	*s = slot{}
	if w.last == idx {
		w.last = -1
	}
	w.keys.remove(idx)
}

// Expire forgets the keys with no event in (t-per, t]: their measure is 0
// whether remembered or not. It keeps memory bounded by the keys active in
// one window, however many keys were ever seen.
//
// A key kept that holds one entry or none, after those out of the window
// are dropped, goes back to a slot alone.
func (w *Window) Expire(t time.Time) {
	since := w.floor(t.UnixNano()) - int64(w.per)
	w.keys.each(func(idx int32) {
		switch s := w.slots.At(idx); {
		case s.touched <= since:
			w.forget(idx)
		case s.more != 0:
			w.expire(idx, since)
			w.single(idx)
		}
	})
}

// Reset forgets a key.
func (w *Window) Reset(key string) {
	if idx := w.keys.find([]byte(key)); idx >= 0 {
		w.forget(idx)
	}
}

// Sample calls fn with when up to n of the keys were last touched (Unix
// ns): what a cap on keys picks the least recently seen by.
func (w *Window) Sample(n int, fn func(touched int64)) {
	sampled(w.keys, n, func(idx int32) { fn(w.slots.At(idx).touched) })
}

// Evict forgets the keys last touched before before, but those keep
// keeps, given the key and its measure. It returns how many it forgot.
func (w *Window) Evict(before int64, keep func(key string, value int64) bool) int {
	n := 0
	w.keys.each(func(idx int32) {
		s := w.slots.At(idx)
		if s.touched < before && !keep(w.keys.key(idx), s.sum+w.offset(s)) {
			w.forget(idx)
			n++
		}
	})
	return n
}

// State is a key's saved window: times in Unix nanoseconds, oldest first;
// amounts (nil when all are 1); tags (nil when none); the forgiveness
// offset and when the key was last touched. The zero State is a forgotten key.
type State struct {
	Times   []int64
	Amounts []int64
	Tags    []uint64 // nil: none
	Offset  int64
	Touched int64
}

// Empty reports whether the State is a forgotten key.
func (st State) Empty() bool { return len(st.Times) == 0 && st.Offset == 0 }

// Restore sets a key's window as saved by Flush, keeping what the current
// limit needs: it replaces what the key had, and an empty State forgets
// it (a store hands back what was saved in the order saved).
func (w *Window) Restore(key string, st State) {
	if st.Empty() {
		if idx := w.keys.find([]byte(key)); idx >= 0 {
			w.slots.At(idx).flags &^= saved // as saved: nothing to save
			w.forget(idx)
		}
		return
	}
	idx, added := w.keys.add([]byte(key))
	if !added {
		w.forgetEntries(idx)
	} else {
		w.newSlot(idx)
	}
	s := w.slots.At(idx)
	s.touched = w.floor(st.Touched)
	s.flags |= saved
	if st.Offset != 0 {
		w.series(idx).offset = st.Offset
	}
	var newest int64
	for i, t := range st.Times {
		a := int64(1)
		if st.Amounts != nil && i < len(st.Amounts) {
			a = st.Amounts[i]
		}
		t = w.floor(t) // saved before the resolution was kept, or by another one
		if i > 0 && t < newest {
			t = newest
		}
		newest = t
		w.push(idx, t, a)
		if i < len(st.Tags) && st.Tags[i] != 0 {
			w.last = idx
			w.Tag(st.Tags[i])
		}
		s = w.slots.At(idx)
		s.touched = max(s.touched, t)
	}
	w.last = -1
	if w.slots.At(idx).more != 0 {
		w.trim(idx, w.limit)
	}
}

// forgetEntries empties a key's entries, for a Restore over it.
func (w *Window) forgetEntries(idx int32) {
	s := w.slots.At(idx)
	if s.more != 0 {
		w.spare = append(w.spare, s.more-1)
	}
	*s = slot{flags: s.flags & (dirty | saved)}
}

// Flush calls save for every key changed since the last Flush, with its
// state, or with an empty State for a key forgotten that was saved (by a
// Flush, or Restore): a key that came and went between two Flushes is not
// named. The slices are only valid during the call; the key, as long as
// the caller keeps it.
func (w *Window) Flush(save func(key string, st State)) {
	for _, key := range w.gone {
		save(key, State{})
	}
	w.gone = w.gone[:0]
	var one, oneAmount [1]int64
	var oneTag [1]uint64
	for _, idx := range w.dirty {
		s := w.slots.At(idx)
		if s.flags&dirty == 0 {
			continue // forgotten since, or already saved in this flush
		}
		s.flags &^= dirty
		st := State{Touched: s.touched}
		if s.more == 0 {
			if s.flags&has != 0 {
				one[0] = s.t
				st.Times = one[:]
				if s.sum != 1 {
					oneAmount[0] = s.sum
					st.Amounts = oneAmount[:]
				}
				if s.tag != 0 {
					oneTag[0] = s.tag
					st.Tags = oneTag[:]
				}
			}
		} else {
			m := w.more.At(s.more - 1)
			st.Times, st.Offset = m.times[m.head:], m.offset
			if m.amounts != nil {
				st.Amounts = m.amounts[m.head:]
			}
			if m.tags != nil {
				st.Tags = m.tags[m.head:]
			}
		}
		if !toSave(&s.flags, st) {
			continue // the store holds nothing to forget
		}
		save(w.keys.key(idx), st)
	}
	w.dirty = w.dirty[:0]
}

// toSave notes in a key's flags whether the store holds its window once
// st is saved, and reports whether st is to be saved: a key forgotten
// that the store never held is not.
func toSave(flags *uint8, st State) bool {
	if !st.Empty() {
		*flags |= saved
		return true
	}
	if *flags&saved == 0 {
		return false
	}
	*flags &^= saved
	return true
}

// Resave marks every key changed: the next Flush saves them all (a store
// that keeps what was saved in order rewrites them, to drop the rest).
func (w *Window) Resave() {
	w.keys.each(w.markDirty)
}

// sampled calls fn with up to n indexes of t's keys, spread over the
// table.
func sampled(t *keyTable, n int, fn func(idx int32)) {
	total := t.loc.Len()
	if total == 0 || n <= 0 {
		return
	}
	step := max(1, total/int32(n))
	for i := int32(0); i < total; i += step {
		if *t.loc.At(i) != 0 {
			fn(i)
		}
	}
}
