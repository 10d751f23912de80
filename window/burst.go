package window

import (
	"strings"
	"time"
)

// burstMax bounds the events a key keeps for its burst score. A key with
// more events than this within the expiry has long passed any sensible
// limit; the oldest, which add the least to the score, are dropped.
const burstMax = 1024

// Epsilons of the burst score: the least gap between two events, so that
// events in the same second of a log add 1, and two Date: headers, which
// have a resolution of a second and clocks that disagree, 3 seconds.
const (
	BurstEpsilon     = time.Second
	BurstDateEpsilon = 3 * time.Second
)

// Burst keeps FML's burst score per key. At each event at time t, the score
// is E{t} = Σ 1/max(|t − tᵢ|, ε) over the key's earlier events within
// expire, in seconds, and E{d} the same sum over the events' Date: headers
// (events without one take no part).
type Burst struct {
	expire time.Duration
	keys   map[string]*burstSeries
	dirty  []string
	last   *burstSeries // of the last Add, for Tag
}

type burstSeries struct {
	key   string
	times []int64  // log times, Unix ns, oldest first
	dates []int64  // Date: headers, Unix ns; 0 where unknown
	tags  []uint64 // see Tag; nil while none was given
	dirty bool
}

// NewBurst returns a Burst that sums over events within expire.
func NewBurst(expire time.Duration) *Burst {
	return &Burst{expire: expire, keys: make(map[string]*burstSeries)}
}

// Expire is the time over which scores are summed.
func (b *Burst) Expire() time.Duration { return b.expire }
func (b *Burst) Len() int              { return len(b.keys) }

// Add records an event of key at t, with its Date: header (zero when
// unknown), and returns E{t} and, when the event and some earlier one have
// a date, E{d}.
func (b *Burst) Add(key []byte, t, date time.Time) (et, ed float64, hasDate bool) {
	s := b.keys[string(key)]
	if s == nil {
		s = &burstSeries{key: string(key)}
		b.keys[s.key] = s
	}
	if !s.dirty {
		s.dirty = true
		b.dirty = append(b.dirty, s.key)
	}
	now := t.UnixNano()
	if n := len(s.times); n > 0 && now < s.times[n-1] {
		now = s.times[n-1]
	}
	// Drop what left the expiry, and the oldest past the bound.
	drop := 0
	for drop < len(s.times) && s.times[drop] <= now-int64(b.expire) {
		drop++
	}
	if len(s.times)-drop >= burstMax {
		drop = len(s.times) - burstMax + 1
	}
	if drop > 0 {
		s.times = append(s.times[:0], s.times[drop:]...)
		s.dates = append(s.dates[:0], s.dates[drop:]...)
		if s.tags != nil {
			s.tags = append(s.tags[:0], s.tags[drop:]...)
		}
	}
	d := int64(0)
	if !date.IsZero() {
		d = date.UnixNano()
	}
	for i, ti := range s.times {
		et += 1 / max(float64(now-ti), float64(BurstEpsilon)) * float64(time.Second)
		if d != 0 && s.dates[i] != 0 {
			gap := d - s.dates[i]
			if gap < 0 {
				gap = -gap
			}
			ed += 1 / max(float64(gap), float64(BurstDateEpsilon)) * float64(time.Second)
			hasDate = true
		}
	}
	s.times = append(s.times, now)
	s.dates = append(s.dates, d)
	if s.tags != nil {
		s.tags = append(s.tags, 0)
	}
	b.last = s
	return et, ed, hasDate
}

// Tag tags the event the last Add recorded with where it was logged.
func (b *Burst) Tag(tag uint64) {
	s := b.last
	if s == nil || tag == 0 || len(s.times) == 0 {
		return
	}
	if s.tags == nil {
		s.tags = make([]uint64, len(s.times), cap(s.times))
	}
	s.tags[len(s.tags)-1] = tag
}

// Entries returns the key's events within the expiry before t and at t,
// oldest first, with their Date: headers: the terms of the score at t.
func (b *Burst) Entries(key string, t time.Time) []Entry {
	s := b.keys[key]
	if s == nil {
		return nil
	}
	since, upTo := t.UnixNano()-int64(b.expire), t.UnixNano()
	var out []Entry
	for i, at := range s.times {
		if at <= since || at > upTo {
			continue
		}
		e := Entry{Time: time.Unix(0, at).UTC(), Amount: 1}
		if i < len(s.tags) {
			e.Tag = s.tags[i]
		}
		if s.dates[i] != 0 {
			e.Date = time.Unix(0, s.dates[i]).UTC()
		}
		out = append(out, e)
	}
	return out
}

// Expired forgets the keys with no event within the expiry before t.
func (b *Burst) Expired(t time.Time) {
	since := t.UnixNano() - int64(b.expire)
	for k, s := range b.keys {
		if len(s.times) == 0 || s.times[len(s.times)-1] <= since {
			delete(b.keys, k)
			if !s.dirty {
				b.dirty = append(b.dirty, k)
			}
		}
	}
}

// IsBomb is FML's verdict: E{d} > E{t} and E{d} > soft, or either above
// hard; without dates, E{t} > hard.
func IsBomb(et, ed float64, hasDate bool, soft, hard float64) bool {
	if !hasDate {
		return et > hard
	}
	return ed > et && ed > soft || et > hard || ed > hard
}

// Flush calls save for every key changed since the last Flush with its
// times, dates and tags (nil when none), or with nil for a key forgotten.
func (b *Burst) Flush(save func(key string, times, dates []int64, tags []uint64)) {
	for _, key := range b.dirty {
		s := b.keys[key]
		if s == nil {
			save(key, nil, nil, nil)
			continue
		}
		if !s.dirty {
			continue
		}
		s.dirty = false
		save(key, s.times, s.dates, s.tags)
	}
	b.dirty = b.dirty[:0]
}

// Sample and Evict: see Saved; a key's value is how many events it keeps.
func (b *Burst) Sample(n int, fn func(touched int64)) {
	sampleMap(b.keys, n, func(s *burstSeries) { fn(s.last()) })
}

func (b *Burst) Evict(before int64, keep func(key string, value int64) bool) int {
	n := 0
	for k, s := range b.keys {
		if s.last() < before && !keep(k, int64(len(s.times))) {
			delete(b.keys, k)
			if !s.dirty {
				b.dirty = append(b.dirty, k)
			}
			n++
		}
	}
	return n
}

func (s *burstSeries) last() int64 {
	if len(s.times) == 0 {
		return 0
	}
	return s.times[len(s.times)-1]
}

// Resave marks every key changed (see Window.Resave).
func (b *Burst) Resave() {
	for k, s := range b.keys {
		if !s.dirty {
			s.dirty = true
			b.dirty = append(b.dirty, k)
		}
	}
}

// Restore sets a key's events as saved by Flush, replacing what it had;
// none forgets it.
func (b *Burst) Restore(key string, times, dates []int64, tags []uint64) {
	if len(times) == 0 {
		delete(b.keys, key) // forgotten, as Window.Restore
		return
	}
	key = strings.Clone(key) // kept: a store hands it out for the call only
	s := &burstSeries{key: key, times: append([]int64(nil), times...), dates: make([]int64, len(times))}
	copy(s.dates, dates)
	if len(tags) == len(times) {
		s.tags = append([]uint64(nil), tags...)
	}
	b.keys[key] = s
}
