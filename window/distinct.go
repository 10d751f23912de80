package window

import (
	"slices"
	"strings"
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
type Distinct struct {
	limit int64
	per   time.Duration
	res   int64
	keys  map[string]*seen
	dirty []string
	last  *seen // of the last Add, for Tag
}

// seen is one key's values, by when each was last seen, oldest first.
type seen struct {
	key     string
	times   []int64
	values  []int64
	tags    []uint64 // nil while none was given (Tag)
	touched int64
	dirty   bool
}

// NewDistinct returns a Distinct of length per for counts compared with
// limit.
func NewDistinct(limit int64, per time.Duration) *Distinct {
	return &Distinct{limit: max(limit, 0), per: per, res: int64(Resolution(per)), keys: map[string]*seen{}}
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
func (d *Distinct) Len() int           { return len(d.keys) }

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
	s := d.keys[string(key)]
	if s == nil {
		s = &seen{key: string(key)}
		d.keys[s.key] = s
	}
	now := max(d.floor(t.UnixNano()), s.touched)
	s.expire(now - int64(d.per))
	s.touched = now
	s.see(value, now, min(limit, d.limit))
	d.last = s
	d.markDirty(s)
	return int64(len(s.times))
}

// Tag tags the value the last Add saw with where that event was logged:
// a value keeps the tag of the event that saw it last.
func (d *Distinct) Tag(tag uint64) {
	s := d.last
	if s == nil || tag == 0 || len(s.times) == 0 {
		return
	}
	if s.tags == nil {
		s.tags = make([]uint64, len(s.times), cap(s.times))
	}
	s.tags[len(s.tags)-1] = tag
}

// Entries returns the values the key saw in (t-per, t], each at the time
// it was seen last, oldest first: Amount is 1.
func (d *Distinct) Entries(key string, t time.Time) []Entry {
	s := d.keys[key]
	if s == nil {
		return nil
	}
	since := d.floor(t.UnixNano()) - int64(d.per)
	var out []Entry
	for i, at := range s.times {
		if at > since {
			var tag uint64
			if i < len(s.tags) {
				tag = s.tags[i]
			}
			out = append(out, Entry{Time: time.Unix(0, at).UTC(), Amount: 1, Tag: tag})
		}
	}
	return out
}

// see moves value to the newest place, at t, dropping the oldest beyond
// limit+1.
func (s *seen) see(value, t, limit int64) {
	if i := slices.Index(s.values, value); i >= 0 {
		s.times = slices.Delete(s.times, i, i+1)
		s.values = slices.Delete(s.values, i, i+1)
		if s.tags != nil {
			s.tags = slices.Delete(s.tags, i, i+1)
		}
	}
	s.times = append(s.times, t)
	s.values = append(s.values, value)
	if s.tags != nil {
		s.tags = append(s.tags, 0)
	}
	if extra := int64(len(s.times)) - (limit + 1); extra > 0 {
		s.drop(int(extra))
	}
}

// drop forgets the n oldest values.
func (s *seen) drop(n int) {
	s.times = slices.Delete(s.times, 0, n)
	s.values = slices.Delete(s.values, 0, n)
	if s.tags != nil {
		s.tags = slices.Delete(s.tags, 0, n)
	}
}

// expire drops the values last seen at or before since.
func (s *seen) expire(since int64) {
	n := 0
	for n < len(s.times) && s.times[n] <= since {
		n++
	}
	if n > 0 {
		s.drop(n)
	}
}

// Value returns how many distinct values key saw in (t-per, t].
func (d *Distinct) Value(key string, t time.Time) int64 {
	s := d.keys[key]
	if s == nil {
		return 0
	}
	since := d.floor(t.UnixNano()) - int64(d.per)
	n := int64(0)
	for _, at := range s.times {
		if at > since {
			n++
		}
	}
	return n
}

// Below returns when the count falls to the limit if no value comes: when
// the oldest kept value leaves the window. False when it is not above.
func (d *Distinct) Below(key string) (time.Time, bool) {
	s := d.keys[key]
	if s == nil || int64(len(s.times)) <= d.limit {
		return time.Time{}, false
	}
	return time.Unix(0, s.times[0]+int64(d.per)), true
}

// Forgive is not offered for distinct counts (the config refuses it); it
// forgets the key.
func (d *Distinct) Forgive(key string, n int64, t time.Time) { d.Reset(key) }

func (d *Distinct) markDirty(s *seen) {
	if !s.dirty {
		s.dirty = true
		d.dirty = append(d.dirty, s.key)
	}
}

// Reserve makes room for n keys, before restoring that many.
func (d *Distinct) Reserve(n int) {
	if len(d.keys) == 0 && n > 0 {
		d.keys = make(map[string]*seen, n)
	}
}

// Expire forgets the keys with no event in (t-per, t].
func (d *Distinct) Expire(t time.Time) {
	since := d.floor(t.UnixNano()) - int64(d.per)
	for key, s := range d.keys {
		if s.touched <= since {
			delete(d.keys, key)
			if !s.dirty {
				d.dirty = append(d.dirty, key)
			}
		}
	}
}

// Reset forgets a key.
func (d *Distinct) Reset(key string) {
	if s, ok := d.keys[key]; ok {
		delete(d.keys, key)
		if !s.dirty {
			d.dirty = append(d.dirty, key)
		}
	}
}

// Restore sets a key as saved by Flush: Times are when each value was last
// seen, oldest first, and Amounts the values.
func (d *Distinct) Restore(key string, st State) {
	if len(st.Times) == 0 || len(st.Amounts) != len(st.Times) {
		delete(d.keys, key) // forgotten, as Window.Restore
		return
	}
	key = strings.Clone(key) // kept: a store hands it out for the call only
	s := &seen{key: key, touched: d.floor(st.Touched)}
	for i, t := range st.Times {
		t = max(d.floor(t), s.lastTime())
		s.see(st.Amounts[i], t, d.limit)
		if i < len(st.Tags) && st.Tags[i] != 0 {
			d.last = s
			d.Tag(st.Tags[i])
		}
		s.touched = max(s.touched, t)
	}
	d.last = nil
	d.keys[key] = s
}

func (s *seen) lastTime() int64 {
	if len(s.times) == 0 {
		return 0
	}
	return s.times[len(s.times)-1]
}

// Sample and Evict: see Saved.
func (d *Distinct) Sample(n int, fn func(touched int64)) {
	sampleMap(d.keys, n, func(s *seen) { fn(s.touched) })
}

func (d *Distinct) Evict(before int64, keep func(key string, value int64) bool) int {
	n := 0
	for k, s := range d.keys {
		if s.touched < before && !keep(k, int64(len(s.times))) {
			delete(d.keys, k)
			if !s.dirty {
				d.dirty = append(d.dirty, k)
			}
			n++
		}
	}
	return n
}

// Resave marks every key changed (see Window.Resave).
func (d *Distinct) Resave() {
	for _, s := range d.keys {
		d.markDirty(s)
	}
}

// Flush calls save for every key changed since the last Flush; see
// Window.Flush.
func (d *Distinct) Flush(save func(key string, st State)) {
	for _, key := range d.dirty {
		s := d.keys[key]
		if s == nil {
			save(key, State{})
			continue
		}
		if !s.dirty {
			continue // already saved in this flush
		}
		s.dirty = false
		save(key, State{Times: s.times, Amounts: s.values, Tags: s.tags, Touched: s.touched})
	}
	d.dirty = d.dirty[:0]
}
