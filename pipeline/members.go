package pipeline

import (
	"net/netip"
	"slices"
	"time"
)

// contributors remember, per key of a network rule that enforces on its
// members, the client addresses that sent its last events: when the
// network is blocked, those addresses are — not the neighbours that sent
// nothing. A key keeps at most max of them, the most recently seen; a
// window that crosses limit holds at most limit+1 events, so limit+1
// addresses are all that can have contributed to it. They are saved with
// the windows, so that a block made after a restart is enforced on the
// addresses that sent before it too.
type contributors struct {
	max   int
	keys  map[string][]seenAddr // oldest first
	dirty map[string]bool       // changed since the last flush
}

type seenAddr struct {
	addr netip.Addr
	at   time.Time
}

func newContributors(max int) *contributors {
	return &contributors{max: max, keys: map[string][]seenAddr{}, dirty: map[string]bool{}}
}

// add notes that key's event at t came from addr.
func (c *contributors) add(key []byte, addr netip.Addr, t time.Time) {
	if !addr.IsValid() {
		return
	}
	list := c.keys[string(key)]
	if i := slices.IndexFunc(list, func(s seenAddr) bool { return s.addr == addr }); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if n := len(list); n > 0 && t.Before(list[n-1].at) {
		t = list[n-1].at // out of order: kept in order, as windows keep it
	}
	list = append(list, seenAddr{addr, t})
	if len(list) > c.max {
		list = slices.Delete(list, 0, len(list)-c.max)
	}
	c.keys[string(key)] = list
	c.dirty[string(key)] = true
}

// since returns the addresses key's events came from after since.
func (c *contributors) since(key string, since time.Time) []netip.Addr {
	var out []netip.Addr
	for _, s := range c.keys[key] {
		if s.at.After(since) {
			out = append(out, s.addr)
		}
	}
	return out
}

// expire forgets the keys with no event after since.
func (c *contributors) expire(since time.Time) {
	for k, list := range c.keys {
		if len(list) == 0 || !list[len(list)-1].at.After(since) {
			delete(c.keys, k)
			c.dirty[k] = true
		}
	}
}

// flush calls save for every key changed since the last flush, with its
// addresses and when each was seen (nil for a key forgotten).
func (c *contributors) flush(save func(key string, times []int64, addrs []netip.Addr)) {
	for k := range c.dirty {
		list := c.keys[k]
		var times []int64
		var addrs []netip.Addr
		for _, s := range list {
			times, addrs = append(times, s.at.UnixNano()), append(addrs, s.addr)
		}
		save(k, times, addrs)
	}
	clear(c.dirty)
}

// evict forgets the keys whose newest address was seen before before,
// but those keep keeps.
func (c *contributors) evict(before time.Time, keep func(key string) bool) int {
	n := 0
	for k, list := range c.keys {
		if (len(list) == 0 || list[len(list)-1].at.Before(before)) && !keep(k) {
			delete(c.keys, k)
			c.dirty[k] = true
			n++
		}
	}
	return n
}

// resave marks every key changed, for the next flush.
func (c *contributors) resave() {
	for k := range c.keys {
		c.dirty[k] = true
	}
}

// restore sets a key's addresses as flush saved them, replacing what it
// had; none forgets it.
func (c *contributors) restore(key string, times []int64, addrs []netip.Addr) {
	delete(c.keys, key)
	if len(times) != len(addrs) {
		return
	}
	for i, a := range addrs {
		c.add([]byte(key), a, time.Unix(0, times[i]).UTC())
	}
	delete(c.dirty, key)
}
