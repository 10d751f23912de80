package window

import (
	"slices"
	"time"
)

// Measure is what a rule keeps per key: a sum over a sliding window
// (Window) or a count of distinct values in one (Distinct).
type Measure interface {
	// Add records an event of key at t and returns the key's measure. For
	// a Window, amount is what the event adds; for a Distinct, the value
	// it names (see Hash).
	Add(key []byte, t time.Time, amount int64) int64
	// AddUpTo is Add for a key whose own limit is limit, at most the
	// measure's: exact up to it, keeping no more than it needs.
	AddUpTo(key []byte, t time.Time, amount, limit int64) int64
	Value(key string, t time.Time) int64
	Below(key string) (time.Time, bool)
	Forgive(key string, n int64, t time.Time)
	Limit() int64
	Per() time.Duration
	Reset(key string)
	// Tag tags the event the last Add recorded (see Window.Tag), and
	// Entries returns what the measure at t counts, with the tags.
	Tag(tag uint64)
	Entries(key string, t time.Time) []Entry
	Saved
}

var (
	_ Measure = (*Window)(nil)
	_ Measure = (*Distinct)(nil)
	_ Saved   = (*Peaks)(nil)
)

// Distinct counts, per key, the distinct values seen within a sliding
// window: the senders a SASL account used in ten minutes, the addresses a
// network sent from. Per key it keeps, for at most limit+1 values, when
// each was last seen — the most recent ones — which is all an exact
// answer to "more than limit?" needs: a value that drops out was last
// seen before every kept one, so while it would still count, so do they
// all. The count it reports is exact up to limit+1, and limit+1 above.
// Values are 64-bit hashes (Hash); times are on the grid of Resolution,
// as a Window's.
//
// Its keys are kept as a Window's are (a keyTable, slots in pages): a key
// that saw one value — a network an attacker's botnet sent one message
// from — is one slot, with no allocation of its own.
type Distinct struct {
	limit int64
	per   time.Duration
	res   int64
	keys  *keyTable
	slots pages[dslot]
	more  pages[seen] // by dslot.more-1: the keys that saw more than one value
	spare []int32
	dirty []int32
	gone  []string
	last  int32 // the key of the last Add, for Tag; -1: none
}

// dslot is one key: while more is 0, at most one value (has), seen last
// at t and tagged tag; else its values are more[more-1].
type dslot struct {
	t, value, touched int64
	tag               uint64
	more              int32
	flags             uint8
}

// seen is a key's values, by when each was last seen, oldest first.
type seen struct {
	times  []int64
	values []int64
	tags   []uint64 // nil while none was given (Tag)
}

// NewDistinct returns a Distinct of length per for counts compared with
// limit.
func NewDistinct(limit int64, per time.Duration) *Distinct {
	return &Distinct{limit: max(limit, 0), per: per, res: int64(Resolution(per)), keys: newKeyTable(), last: -1}
}

// Hash is the value Distinct counts for b: FNV-1a, 64 bits, the same in
// every process, so that saved windows mean the same after a restart.
func Hash(b []byte) int64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return int64(h)
}

func (d *Distinct) Limit() int64       { return d.limit }
func (d *Distinct) Per() time.Duration { return d.per }
func (d *Distinct) Len() int           { return d.keys.len() }

func (d *Distinct) floor(t int64) int64 { return t - t%d.res }

// Add records that key saw value at t and returns how many distinct
// values it saw in (t-per, t]. An event older than the key's newest is
// taken at the newest's time, as a Window takes it.
func (d *Distinct) Add(key []byte, t time.Time, value int64) int64 {
	return d.AddUpTo(key, t, value, d.limit)
}

// AddUpTo is Add for a key whose own limit is limit: it keeps limit+1
// values.
func (d *Distinct) AddUpTo(key []byte, t time.Time, value, limit int64) int64 {
	idx, added := d.keys.add(key)
	if added {
		d.newSlot(idx)
	}
	s := d.slots.At(idx)
	now := max(d.floor(t.UnixNano()), s.touched)
	d.expire(idx, now-int64(d.per))
	s.touched = now
	d.see(idx, value, now, min(limit, d.limit))
	d.last = idx
	d.markDirty(idx)
	return d.count(d.slots.At(idx))
}

func (d *Distinct) newSlot(idx int32) {
	if idx == d.slots.Len() {
		d.slots.Add()
	} else {
		*d.slots.At(idx) = dslot{}
	}
}

// count is how many values the key keeps.
func (d *Distinct) count(s *dslot) int64 {
	if s.more == 0 {
		return int64(s.flags & has)
	}
	return int64(len(d.more.At(s.more - 1).times))
}

// each calls fn with the key's values, oldest first; fn returns false to
// stop.
func (d *Distinct) each(s *dslot, fn func(t, value int64, tag uint64) bool) {
	if s.more == 0 {
		if s.flags&has != 0 {
			fn(s.t, s.value, s.tag)
		}
		return
	}
	m := d.more.At(s.more - 1)
	for i, t := range m.times {
		var tag uint64
		if i < len(m.tags) {
			tag = m.tags[i]
		}
		if !fn(t, m.values[i], tag) {
			return
		}
	}
}

// Tag tags the value the last Add saw with where that event was logged:
// a value keeps the tag of the event that saw it last.
func (d *Distinct) Tag(tag uint64) {
	if d.last < 0 || tag == 0 {
		return
	}
	s := d.slots.At(d.last)
	if s.more == 0 {
		if s.flags&has != 0 {
			s.tag = tag
		}
		return
	}
	m := d.more.At(s.more - 1)
	if len(m.times) == 0 {
		return
	}
	if m.tags == nil {
		m.tags = make([]uint64, len(m.times), cap(m.times))
	}
	m.tags[len(m.tags)-1] = tag
}

func (d *Distinct) slotOf(key string) *dslot {
	idx := d.keys.find([]byte(key))
	if idx < 0 {
		return nil
	}
	return d.slots.At(idx)
}

// Entries returns the values the key saw in (t-per, t], each at the time
// it was seen last, oldest first: Amount is 1.
func (d *Distinct) Entries(key string, t time.Time) []Entry {
	s := d.slotOf(key)
	if s == nil {
		return nil
	}
	since := d.floor(t.UnixNano()) - int64(d.per)
	var out []Entry
	d.each(s, func(at, _ int64, tag uint64) bool {
		if at > since {
			out = append(out, Entry{Time: time.Unix(0, at).UTC(), Amount: 1, Tag: tag})
		}
		return true
	})
	return out
}

// series gives the key at idx its values as a seen, holding its one
// value if it had it. A spare seen keeps its slices' room.
func (d *Distinct) series(idx int32) *seen {
	s := d.slots.At(idx)
	if s.more != 0 {
		return d.more.At(s.more - 1)
	}
	var i int32
	if n := len(d.spare); n > 0 {
		i, d.spare = d.spare[n-1], d.spare[:n-1]
	} else {
		i = d.more.Add()
	}
	s = d.slots.At(idx)
	m := d.more.At(i)
	m.times, m.values = m.times[:0], m.values[:0]
	if m.tags != nil {
		m.tags = m.tags[:0]
	}
	if s.flags&has != 0 {
		m.times, m.values = append(m.times, s.t), append(m.values, s.value)
		if m.tags != nil {
			m.tags = append(m.tags, s.tag)
		} else if s.tag != 0 {
			m.tags = append(make([]uint64, 0, cap(m.times)), s.tag)
		}
	}
	s.more, s.flags, s.tag = i+1, s.flags&^has, 0
	return m
}

// single takes a key that keeps one value or none back to its slot alone.
func (d *Distinct) single(idx int32) {
	s := d.slots.At(idx)
	m := d.more.At(s.more - 1)
	if len(m.times) > 1 {
		return
	}
	if len(m.times) == 1 {
		s.t, s.value, s.flags = m.times[0], m.values[0], s.flags|has
		if len(m.tags) > 0 {
			s.tag = m.tags[0]
		}
	}
	d.spare = append(d.spare, s.more-1)
	s.more = 0
}

// see moves value to the newest place, at t, dropping the oldest beyond
// limit+1.
func (d *Distinct) see(idx int32, value, t, limit int64) {
	s := d.slots.At(idx)
	if s.more == 0 {
		switch {
		case s.flags&has == 0:
			s.t, s.value, s.tag, s.flags = t, value, 0, s.flags|has
			return
		case s.value == value:
			s.t, s.tag = t, 0
			return
		case limit == 0:
			s.t, s.value, s.tag = t, value, 0 // keeps limit+1 = 1
			return
		}
	}
	m := d.series(idx)
	if i := slices.Index(m.values, value); i >= 0 {
		m.times = slices.Delete(m.times, i, i+1)
		m.values = slices.Delete(m.values, i, i+1)
		if m.tags != nil {
			m.tags = slices.Delete(m.tags, i, i+1)
		}
	}
	m.times = append(m.times, t)
	m.values = append(m.values, value)
	if m.tags != nil {
		m.tags = append(m.tags, 0)
	}
	if extra := int64(len(m.times)) - (limit + 1); extra > 0 {
		m.drop(int(extra))
	}
}

// drop forgets the n oldest values.
func (m *seen) drop(n int) {
	m.times = slices.Delete(m.times, 0, n)
	m.values = slices.Delete(m.values, 0, n)
	if m.tags != nil {
		m.tags = slices.Delete(m.tags, 0, n)
	}
}

// expire drops the key's values last seen at or before since.
func (d *Distinct) expire(idx int32, since int64) {
	s := d.slots.At(idx)
	if s.more == 0 {
		if s.flags&has != 0 && s.t <= since {
			s.flags &^= has
			s.tag = 0
		}
		return
	}
	m := d.more.At(s.more - 1)
	n := 0
	for n < len(m.times) && m.times[n] <= since {
		n++
	}
	if n > 0 {
		m.drop(n)
	}
}

// Value returns how many distinct values key saw in (t-per, t].
func (d *Distinct) Value(key string, t time.Time) int64 {
	s := d.slotOf(key)
	if s == nil {
		return 0
	}
	since := d.floor(t.UnixNano()) - int64(d.per)
	n := int64(0)
	d.each(s, func(at, _ int64, _ uint64) bool {
		if at > since {
			n++
		}
		return true
	})
	return n
}

// Below returns when the count falls to the limit if no value comes: when
// the oldest kept value leaves the window. False when it is not above.
func (d *Distinct) Below(key string) (time.Time, bool) {
	s := d.slotOf(key)
	if s == nil || d.count(s) <= d.limit {
		return time.Time{}, false
	}
	var oldest int64
	d.each(s, func(at, _ int64, _ uint64) bool { oldest = at; return false })
	return time.Unix(0, oldest+int64(d.per)), true
}

// Forgive is not offered for distinct counts (the config refuses it); it
// forgets the key.
func (d *Distinct) Forgive(key string, n int64, t time.Time) { d.Reset(key) }

func (d *Distinct) markDirty(idx int32) {
	if s := d.slots.At(idx); s.flags&dirty == 0 {
		s.flags |= dirty
		d.dirty = append(d.dirty, idx)
	}
}

// forget drops the key at idx; quiet: as saved, nothing to save.
func (d *Distinct) forget(idx int32, quiet bool) {
	s := d.slots.At(idx)
	if !quiet && s.flags&saved != 0 {
		d.gone = append(d.gone, d.keys.key(idx))
	}
	if s.more != 0 {
		d.spare = append(d.spare, s.more-1)
	}
	*s = dslot{}
	if d.last == idx {
		d.last = -1
	}
	d.keys.remove(idx)
}

// Expire forgets the keys with no event in (t-per, t]; a key kept that
// holds one value or none goes back to its slot alone.
func (d *Distinct) Expire(t time.Time) {
	since := d.floor(t.UnixNano()) - int64(d.per)
	d.keys.each(func(idx int32) {
		switch s := d.slots.At(idx); {
		case s.touched <= since:
			d.forget(idx, false)
		case s.more != 0:
			d.expire(idx, since)
			d.single(idx)
		}
	})
}

// Reset forgets a key.
func (d *Distinct) Reset(key string) {
	if idx := d.keys.find([]byte(key)); idx >= 0 {
		d.forget(idx, false)
	}
}

// Restore sets a key as saved by Flush, replacing what it had: Times are
// when each value was last seen, oldest first, and Amounts the values.
// None forgets it.
func (d *Distinct) Restore(key string, st State) {
	if len(st.Times) == 0 || len(st.Amounts) != len(st.Times) {
		if idx := d.keys.find([]byte(key)); idx >= 0 {
			d.forget(idx, true)
		}
		return
	}
	idx, added := d.keys.add([]byte(key))
	if !added {
		d.forget(idx, true)
		idx, _ = d.keys.add([]byte(key))
	}
	d.newSlot(idx)
	d.slots.At(idx).touched = d.floor(st.Touched)
	d.slots.At(idx).flags |= saved
	var newest int64
	for i, t := range st.Times {
		t = d.floor(t)
		if i > 0 {
			t = max(t, newest)
		}
		newest = t
		d.see(idx, st.Amounts[i], t, d.limit)
		if i < len(st.Tags) && st.Tags[i] != 0 {
			d.last = idx
			d.Tag(st.Tags[i])
		}
		s := d.slots.At(idx)
		s.touched = max(s.touched, t)
	}
	d.last = -1
}

// Sample and Evict: see Saved.
func (d *Distinct) Sample(n int, fn func(touched int64)) {
	sampled(d.keys, n, func(idx int32) { fn(d.slots.At(idx).touched) })
}

func (d *Distinct) Evict(before int64, keep func(key string, value int64) bool) int {
	n := 0
	d.keys.each(func(idx int32) {
		s := d.slots.At(idx)
		if s.touched < before && !keep(d.keys.key(idx), d.count(s)) {
			d.forget(idx, false)
			n++
		}
	})
	return n
}

// Resave marks every key changed (see Window.Resave).
func (d *Distinct) Resave() {
	d.keys.each(d.markDirty)
}

// Flush calls save for every key changed since the last Flush; see
// Window.Flush.
func (d *Distinct) Flush(save func(key string, st State)) {
	for _, key := range d.gone {
		save(key, State{})
	}
	d.gone = d.gone[:0]
	var t1, v1 [1]int64
	var tag1 [1]uint64
	for _, idx := range d.dirty {
		s := d.slots.At(idx)
		if s.flags&dirty == 0 {
			continue // forgotten since, or already saved in this flush
		}
		s.flags &^= dirty
		st := State{Touched: s.touched}
		if s.more == 0 {
			if s.flags&has != 0 {
				t1[0], v1[0] = s.t, s.value
				st.Times, st.Amounts = t1[:], v1[:]
				if s.tag != 0 {
					tag1[0] = s.tag
					st.Tags = tag1[:]
				}
			}
		} else {
			m := d.more.At(s.more - 1)
			st.Times, st.Amounts, st.Tags = m.times, m.values, m.tags
		}
		if !toSave(&s.flags, st) {
			continue // the store holds nothing to forget
		}
		save(d.keys.key(idx), st)
	}
	d.dirty = d.dirty[:0]
}
