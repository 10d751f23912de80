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
type Window struct {
	limit int64
	per   time.Duration
	res   int64 // ns; per is a multiple of it
	keys  map[string]*series
	dirty []string
	last  *series // of the last Add, for Tag
}

// New returns a Window of length per for sums compared with limit.
func New(limit int64, per time.Duration) *Window {
	return &Window{limit: max(limit, 0), per: per, res: int64(Resolution(per)), keys: make(map[string]*series)}
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

// series is one key's newest events, oldest first from head.
type series struct {
	key     string // the map's key, so that marking it dirty costs nothing
	times   []int64
	amounts []int64 // nil while every amount is 1
	// tags are what the caller tagged each entry's first event with
	// (Tag): nil while none was.
	tags    []uint64
	head    int
	sum     int64 // of the kept events
	offset  int64 // forgiveness: added to the sum until the key is idle
	touched int64 // the newest event, or when the key was forgiven
	dirty   bool
}

// Limit and Per return the parameters the Window was made with; Len the
// number of keys it holds.
func (w *Window) Limit() int64       { return w.limit }
func (w *Window) Per() time.Duration { return w.per }
func (w *Window) Len() int           { return len(w.keys) }

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
	s := w.keys[string(key)]
	if s == nil {
		s = &series{key: string(key)}
		w.keys[s.key] = s
	}
	now := max(w.floor(t.UnixNano()), s.touched)
	s.expire(now - int64(w.per))
	s.touched = now
	w.last = nil
	if amount > 0 {
		s.push(now, amount)
		s.trim(min(limit, w.limit))
		w.last = s
	}
	w.markDirty(s)
	return s.sum + s.offset
}

// Tag tags the event the last Add recorded with tag (not 0): where it was
// logged, for the pipeline. An entry keeps the tag of its first event.
// Tags cost 8 bytes an entry, and are kept and saved with the entries.
func (w *Window) Tag(tag uint64) {
	s := w.last
	if s == nil || tag == 0 {
		return
	}
	n := len(s.times)
	if s.tags == nil { // from now on as long as times (push)
		s.tags = make([]uint64, n, cap(s.times))
	}
	if s.tags[n-1] == 0 {
		s.tags[n-1] = tag
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

// Entries returns the key's kept entries in (t-per, t], oldest first:
// those whose sum the measure is, up to the limit and one more.
func (w *Window) Entries(key string, t time.Time) []Entry {
	s := w.keys[key]
	if s == nil {
		return nil
	}
	since := w.floor(t.UnixNano()) - int64(w.per)
	var out []Entry
	for i := s.head; i < len(s.times); i++ {
		if s.times[i] > since {
			out = append(out, Entry{Time: time.Unix(0, s.times[i]).UTC(), Amount: s.amount(i), Tag: s.tag(i)})
		}
	}
	return out
}

func (s *series) tag(i int) uint64 {
	if i < len(s.tags) {
		return s.tags[i]
	}
	return 0
}

// Value returns the key's measure at t without adding an event.
func (w *Window) Value(key string, t time.Time) int64 {
	s := w.keys[key]
	if s == nil {
		return 0
	}
	since := w.floor(t.UnixNano()) - int64(w.per)
	sum := s.sum
	for i := s.head; i < len(s.times) && s.times[i] <= since; i++ {
		sum -= s.amount(i)
	}
	if sum == 0 && s.touched <= since {
		return 0 // idle: the offset has lapsed
	}
	return sum + s.offset
}

// Below returns when the key's measure falls to the limit or under if no
// further event comes: the end of a block that lifts when the key is
// "accepted again". It returns false when the measure is not above it.
func (w *Window) Below(key string) (time.Time, bool) {
	s := w.keys[key]
	if s == nil || s.sum+s.offset <= w.limit {
		return time.Time{}, false
	}
	// Dropping events oldest first, find the one whose leaving brings the
	// measure down to the limit: at its time plus per.
	sum := s.sum + s.offset
	for i := s.head; i < len(s.times); i++ {
		sum -= s.amount(i)
		if sum <= w.limit {
			return time.Unix(0, s.times[i]+int64(w.per)), true
		}
	}
	return time.Time{}, false // the offset alone keeps it above: cannot be
}

// Forgive clears the key's events and sets its measure to -n at t, from
// which the next events count up: smtp-dos-detector's behind counter. The
// offset lapses when the key is idle for a whole window.
func (w *Window) Forgive(key string, n int64, t time.Time) {
	s := w.keys[key]
	if s == nil {
		s = &series{key: key}
		w.keys[key] = s
	}
	s.times, s.amounts, s.tags, s.head, s.sum = s.times[:0], nil, nil, 0, 0
	s.offset = -n
	s.touched = max(s.touched, w.floor(t.UnixNano()))
	w.markDirty(s)
}

func (w *Window) markDirty(s *series) {
	if !s.dirty {
		s.dirty = true
		w.dirty = append(w.dirty, s.key)
	}
}

func (s *series) len() int { return len(s.times) - s.head }

func (s *series) amount(i int) int64 {
	if s.amounts == nil {
		return 1
	}
	return s.amounts[i]
}

// push adds an event at t, which is at or after the newest: one at the
// newest's time adds to it, so that a key holds one entry per interval of
// the resolution.
func (s *series) push(t, amount int64) {
	if n := len(s.times); n > s.head && s.times[n-1] == t {
		s.amounts = s.amountsOrOnes()
		s.amounts[n-1] += amount
		s.sum += amount
		return
	}
	if amount != 1 && s.amounts == nil {
		s.amounts = make([]int64, len(s.times), cap(s.times))
		for i := range s.amounts {
			s.amounts[i] = 1
		}
	}
	s.times = append(s.times, t)
	if s.amounts != nil {
		s.amounts = append(s.amounts, amount)
	}
	if s.tags != nil {
		s.tags = append(s.tags, 0)
	}
	s.sum += amount
}

// expire drops the events at or before since; an idle key's offset lapses.
func (s *series) expire(since int64) {
	for s.head < len(s.times) && s.times[s.head] <= since {
		s.sum -= s.amount(s.head)
		s.head++
	}
	if s.head == len(s.times) {
		s.times, s.head, s.sum = s.times[:0], 0, 0
		if s.amounts != nil {
			s.amounts = s.amounts[:0]
		}
		if s.tags != nil {
			s.tags = s.tags[:0]
		}
		if s.touched <= since {
			s.offset = 0
		}
	}
	s.compact()
}

// trim drops the oldest events that are not needed: while the newer ones
// alone are above the limit, the oldest can only add to a sum already
// known to be above it, and leave the window before them.
func (s *series) trim(limit int64) {
	for s.len() > 1 && s.sum-s.amount(s.head)+s.offset > limit {
		s.sum -= s.amount(s.head)
		s.head++
	}
	s.compact()
}

func (s *series) amountsOrOnes() []int64 {
	if s.amounts == nil {
		s.amounts = make([]int64, len(s.times), cap(s.times))
		for i := range s.amounts {
			s.amounts[i] = 1
		}
	}
	return s.amounts
}

// compact moves the kept events to the front when the dropped ones fill
// half the slice, so that memory follows what is kept.
func (s *series) compact() {
	if s.head == 0 || s.head < len(s.times)/2 {
		return
	}
	n := copy(s.times, s.times[s.head:])
	s.times = s.times[:n]
	if s.amounts != nil {
		copy(s.amounts, s.amounts[s.head:])
		s.amounts = s.amounts[:n]
	}
	if s.tags != nil {
		copy(s.tags, s.tags[s.head:])
		s.tags = s.tags[:n]
	}
	s.head = 0
}

// Reserve makes room for n keys, before restoring that many.
func (w *Window) Reserve(n int) {
	if len(w.keys) == 0 && n > 0 {
		w.keys = make(map[string]*series, n)
	}
}

// Expire forgets the keys with no event in (t-per, t]: their measure is 0
// whether remembered or not. It keeps memory bounded by the keys active in
// one window, however many keys were ever seen.
func (w *Window) Expire(t time.Time) {
	since := w.floor(t.UnixNano()) - int64(w.per)
	for key, s := range w.keys {
		if s.touched <= since {
			delete(w.keys, key)
			if !s.dirty { // else it is on the dirty list already
				w.dirty = append(w.dirty, key)
			}
		}
	}
}

// Reset forgets a key.
func (w *Window) Reset(key string) {
	if s, ok := w.keys[key]; ok {
		delete(w.keys, key)
		if !s.dirty {
			w.dirty = append(w.dirty, key)
		}
	}
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
// limit needs.
func (w *Window) Restore(key string, st State) {
	if st.Empty() {
		return
	}
	s := &series{key: key, offset: st.Offset, touched: w.floor(st.Touched)}
	for i, t := range st.Times {
		a := int64(1)
		if st.Amounts != nil && i < len(st.Amounts) {
			a = st.Amounts[i]
		}
		t = w.floor(t) // saved before the resolution was kept, or by another one
		if n := len(s.times); n > 0 && t < s.times[n-1] {
			t = s.times[n-1]
		}
		s.push(t, a)
		if i < len(st.Tags) && st.Tags[i] != 0 {
			w.last = s
			w.Tag(st.Tags[i])
		}
		s.touched = max(s.touched, t)
	}
	w.last = nil
	s.trim(w.limit)
	w.keys[key] = s
}

// Flush calls save for every key changed since the last Flush, with its
// state, or with an empty State for a key forgotten. The slices are only
// valid during the call.
func (w *Window) Flush(save func(key string, st State)) {
	for _, key := range w.dirty {
		s := w.keys[key]
		if s == nil {
			save(key, State{})
			continue
		}
		if !s.dirty {
			continue // already saved in this flush
		}
		s.dirty = false
		st := State{Times: s.times[s.head:], Offset: s.offset, Touched: s.touched}
		if s.amounts != nil {
			st.Amounts = s.amounts[s.head:]
		}
		if s.tags != nil {
			st.Tags = s.tags[s.head:]
		}
		save(key, st)
	}
	w.dirty = w.dirty[:0]
}
