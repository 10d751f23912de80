package window

import (
	"time"
)

// Counter is an exact sliding-window event counter per key. It is not safe
// for concurrent use.
type Counter struct {
	limit int
	per   time.Duration
	keys  map[string]*ring
	dirty []string
}

// ring holds the times, in Unix nanoseconds, of a key's most recent events,
// oldest first from head, at most limit+1 of them.
type ring struct {
	key   string // the map's key, so marking it dirty costs no allocation
	times []int64
	head  int
	dirty bool
}

// New returns a Counter for windows of length per that must tell counts up
// to limit+1 apart. limit must be at least 0 and per positive.
func New(limit int, per time.Duration) *Counter {
	if limit < 0 {
		limit = 0
	}
	return &Counter{limit: limit, per: per, keys: make(map[string]*ring)}
}

// Limit and Per return the parameters the Counter was made with.
func (c *Counter) Limit() int         { return c.limit }
func (c *Counter) Per() time.Duration { return c.per }
func (c *Counter) Len() int           { return len(c.keys) }

// Add records one event of key at t and returns the number of the key's
// events in (t-per, t], counting this one. Counts above limit+1 are
// reported as limit+1: the window keeps no more.
//
// Events must come in time order per key. An event older than the key's
// newest (a clock stepped back, or lines of two logs slightly out of order)
// is counted at the key's newest time, so it is neither lost nor able to
// shrink the window.
func (c *Counter) Add(key string, t time.Time) int {
	r := c.keys[key]
	if r == nil {
		r = c.newRing(key)
	}
	return c.add(r, t)
}

// AddBytes is Add for a key in a buffer: it costs no allocation unless the
// key is new.
func (c *Counter) AddBytes(key []byte, t time.Time) int {
	r := c.keys[string(key)]
	if r == nil {
		r = c.newRing(string(key))
	}
	return c.add(r, t)
}

func (c *Counter) newRing(key string) *ring {
	r := &ring{key: key, times: make([]int64, 0, min(c.limit+1, 4))}
	c.keys[key] = r
	return r
}

func (c *Counter) add(r *ring, t time.Time) int {
	now := t.UnixNano()
	if n := len(r.times); n > 0 {
		if newest := r.at(n - 1); now < newest {
			now = newest
		}
	}
	if len(r.times) < c.limit+1 {
		r.times = append(r.times, now)
	} else {
		r.times[r.head] = now
		r.head = (r.head + 1) % len(r.times)
	}
	c.markDirty(r)
	return r.count(now - int64(c.per))
}

// Count returns the number of the key's events in (t-per, t], at most
// limit+1, without adding one.
func (c *Counter) Count(key string, t time.Time) int {
	r := c.keys[key]
	if r == nil {
		return 0
	}
	return r.count(t.UnixNano() - int64(c.per))
}

func (c *Counter) markDirty(r *ring) {
	if !r.dirty {
		r.dirty = true
		c.dirty = append(c.dirty, r.key)
	}
}

// at returns the i-th oldest time.
func (r *ring) at(i int) int64 {
	return r.times[(r.head+i)%len(r.times)]
}

// count returns how many times are after since.
func (r *ring) count(since int64) int {
	n := len(r.times)
	// Times are in order: find the first one inside the window.
	lo, hi := 0, n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r.at(mid) <= since {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return n - lo
}

// Expire forgets the keys that have no event in (t-per, t]: they count 0
// whether remembered or not. It keeps memory bounded by the keys active in
// one window, however many keys were ever seen.
func (c *Counter) Expire(t time.Time) {
	since := t.UnixNano() - int64(c.per)
	for key, r := range c.keys {
		if n := len(r.times); n == 0 || r.at(n-1) <= since {
			delete(c.keys, key)
			if !r.dirty { // else it is on the dirty list already
				c.dirty = append(c.dirty, key)
			}
		}
	}
}

// Reset forgets a key.
func (c *Counter) Reset(key string) {
	if r, ok := c.keys[key]; ok {
		delete(c.keys, key)
		if !r.dirty {
			c.dirty = append(c.dirty, key)
		}
	}
}

// Times returns the times the Counter keeps for key, oldest first.
func (c *Counter) Times(key string) []time.Time {
	r := c.keys[key]
	if r == nil {
		return nil
	}
	out := make([]time.Time, len(r.times))
	for i := range r.times {
		out[i] = time.Unix(0, r.at(i))
	}
	return out
}

// Restore sets the times of key, as saved from Flush. Times beyond what the
// Counter keeps (a limit lowered since they were saved) are dropped, the
// oldest first; times out of order are put in order.
func (c *Counter) Restore(key string, times []int64) {
	if len(times) == 0 {
		return
	}
	keep := min(len(times), c.limit+1)
	r := &ring{key: key, times: make([]int64, keep)}
	copy(r.times, times[len(times)-keep:])
	for i := 1; i < keep; i++ {
		if r.times[i] < r.times[i-1] {
			r.times[i] = r.times[i-1]
		}
	}
	c.keys[key] = r
}

// Flush calls save for every key changed since the last Flush, with its
// times oldest first in Unix nanoseconds, or with nil for a key forgotten.
// The times slice is only valid during the call.
func (c *Counter) Flush(save func(key string, times []int64)) {
	var buf []int64
	for _, key := range c.dirty {
		r := c.keys[key]
		if r == nil {
			save(key, nil)
			continue
		}
		if !r.dirty {
			continue // already saved in this flush
		}
		r.dirty = false
		buf = buf[:0]
		for i := range r.times {
			buf = append(buf, r.at(i))
		}
		save(key, buf)
	}
	c.dirty = c.dirty[:0]
}
