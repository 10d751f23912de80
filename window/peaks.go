package window

import (
	"slices"
	"strings"
	"time"
)

// Saved is what is kept of a rule's keys across restarts.
type Saved interface {
	Len() int
	Expire(t time.Time)
	// Restore replaces a key's state with a saved one; an empty State
	// forgets the key.
	Restore(key string, st State)
	Flush(save func(key string, st State))
	// Resave marks every key changed, for the next Flush.
	Resave()
	// Sample calls fn with when up to n keys were last touched (Unix ns),
	// and Evict forgets the keys last touched before before that keep
	// does not keep, given the key's measure: a cap on keys forgets the
	// least recently seen first. Evict returns how many it forgot.
	Sample(n int, fn func(touched int64))
	Evict(before int64, keep func(key string, value int64) bool) int
}

// sampleMap calls fn with up to n values of m's, from where the map's
// iteration starts (at random).
func sampleMap[V any](m map[string]V, n int, fn func(V)) {
	for _, v := range m {
		if n <= 0 {
			return
		}
		n--
		fn(v)
	}
}

// peakBuckets is how many parts a history is kept in: a key costs at most
// peakBuckets+1 pairs of int64.
const peakBuckets = 8

// Peaks keeps, per key, the highest measure it reached over a history, in
// buckets: a key's own normal. A limit that adapts reads it to let a big
// sender send what it always sends, and a new one not. Only buckets that
// are over count: the bucket being filled is not yet history, so a key
// cannot raise its own limit with the flood it is sending.
type Peaks struct {
	history time.Duration
	bucket  int64 // ns
	keys    map[string]*peaks
	dirty   []string
}

// peaks are one key's buckets, oldest first: the start of each and the
// highest measure noted in it.
type peaks struct {
	key    string
	starts []int64
	highs  []int64
	dirty  bool
}

// NewPeaks keeps the peaks of the last history, in buckets of history/8
// (a day for 8 days) rounded to whole seconds.
func NewPeaks(history time.Duration) *Peaks {
	b := max(int64(history/peakBuckets)/int64(time.Second), 1) * int64(time.Second)
	return &Peaks{history: history, bucket: b, keys: map[string]*peaks{}}
}

// History is how far back peaks count.
func (p *Peaks) History() time.Duration { return p.history }

// Note records that key's measure was v at t.
func (p *Peaks) Note(key []byte, t time.Time, v int64) {
	s := p.keys[string(key)]
	if s == nil {
		// Sized once: a key holds at most peakBuckets+1 buckets.
		s = &peaks{key: string(key), starts: make([]int64, 0, peakBuckets+1), highs: make([]int64, 0, peakBuckets+1)}
		p.keys[s.key] = s
	}
	start := t.UnixNano() - t.UnixNano()%p.bucket
	n := len(s.starts)
	switch {
	case n > 0 && s.starts[n-1] >= start: // this bucket (or a clock stepped back: the newest)
		if v <= s.highs[n-1] {
			return
		}
		s.highs[n-1] = v
	default:
		s.starts = append(s.starts, start)
		s.highs = append(s.highs, v)
		s.trim(start - int64(p.history))
	}
	if !s.dirty {
		s.dirty = true
		p.dirty = append(p.dirty, s.key)
	}
}

// trim drops the buckets that started before since.
func (s *peaks) trim(since int64) {
	i := 0
	for i < len(s.starts) && s.starts[i] < since {
		i++
	}
	if i > 0 {
		s.starts = append(s.starts[:0], s.starts[i:]...)
		s.highs = append(s.highs[:0], s.highs[i:]...)
	}
}

// Peak is the highest measure key reached in the buckets over by t that
// started within the history before it; 0 when there are none.
func (p *Peaks) Peak(key string, t time.Time) int64 {
	s := p.keys[key] // string(key []byte) here costs no allocation
	if s == nil {
		return 0
	}
	now := t.UnixNano()
	since := now - int64(p.history)
	high := int64(0)
	for i, start := range s.starts {
		if start >= since && start+p.bucket <= now {
			high = max(high, s.highs[i])
		}
	}
	return high
}

func (p *Peaks) Len() int { return len(p.keys) }

// Expire forgets the keys whose newest bucket left the history.
func (p *Peaks) Expire(t time.Time) {
	since := t.UnixNano() - int64(p.history) - p.bucket
	for k, s := range p.keys {
		if len(s.starts) == 0 || s.starts[len(s.starts)-1] < since {
			delete(p.keys, k)
			if !s.dirty {
				p.dirty = append(p.dirty, k)
			}
		}
	}
}

// Restore sets a key as Flush saved it: Times are the buckets' starts,
// Amounts their peaks.
func (p *Peaks) Restore(key string, st State) {
	if len(st.Times) == 0 || len(st.Times) != len(st.Amounts) {
		delete(p.keys, key) // forgotten, as Window.Restore
		return
	}
	key = strings.Clone(key) // kept: a store hands it out for the call only
	s := &peaks{key: key}
	for i, start := range st.Times {
		start -= start % p.bucket // saved with another history: on this grid
		if n := len(s.starts); n > 0 && start <= s.starts[n-1] {
			s.highs[n-1] = max(s.highs[n-1], st.Amounts[i])
			continue
		}
		s.starts = append(s.starts, start)
		s.highs = append(s.highs, st.Amounts[i])
	}
	p.keys[key] = s
}

// Sample and Evict: see Saved. A key's value is its highest peak.
func (p *Peaks) Sample(n int, fn func(touched int64)) {
	sampleMap(p.keys, n, func(s *peaks) { fn(s.last()) })
}

func (p *Peaks) Evict(before int64, keep func(key string, value int64) bool) int {
	n := 0
	for k, s := range p.keys {
		if s.last() < before && !keep(k, slices.Max(append([]int64{0}, s.highs...))) {
			delete(p.keys, k)
			if !s.dirty {
				p.dirty = append(p.dirty, k)
			}
			n++
		}
	}
	return n
}

// last is when the key's newest bucket starts.
func (s *peaks) last() int64 {
	if len(s.starts) == 0 {
		return 0
	}
	return s.starts[len(s.starts)-1]
}

// Resave marks every key changed (see Window.Resave).
func (p *Peaks) Resave() {
	for k, s := range p.keys {
		if !s.dirty {
			s.dirty = true
			p.dirty = append(p.dirty, k)
		}
	}
}

// Flush calls save for every key changed since the last Flush.
func (p *Peaks) Flush(save func(key string, st State)) {
	for _, key := range p.dirty {
		s := p.keys[key]
		if s == nil {
			save(key, State{})
			continue
		}
		if !s.dirty {
			continue // already saved in this flush
		}
		s.dirty = false
		var touched int64
		if n := len(s.starts); n > 0 {
			touched = s.starts[n-1]
		}
		save(key, State{Times: s.starts, Amounts: s.highs, Touched: touched})
	}
	p.dirty = p.dirty[:0]
}
