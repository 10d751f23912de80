package pipeline

import (
	"net/netip"
	"slices"
	"strings"
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
	keys  map[string]*members
	dirty []*members // changed since the last flush
	gone  []string   // forgotten since the last flush
	// flush's buffers: what it hands save is only good during the call.
	times []int64
	addrs []netip.Addr
}

// members are one key's addresses, oldest first. An event of a key seen
// before changes them in place: no allocation, no map write.
type members struct {
	key   string
	list  []seenAddr
	dirty bool
	saved bool // the store holds them: forgetting them is saved too
}

type seenAddr struct {
	addr netip.Addr
	at   time.Time
}

func newContributors(max int) *contributors {
	return &contributors{max: max, keys: map[string]*members{}}
}

func (c *contributors) markDirty(m *members) {
	if !m.dirty {
		m.dirty = true
		c.dirty = append(c.dirty, m)
	}
}

// add notes that key's event at t came from addr.
func (c *contributors) add(key []byte, addr netip.Addr, t time.Time) {
	if !addr.IsValid() {
		return
	}
	m := c.keys[string(key)]
	if m == nil {
		m = &members{key: string(key)}
		c.keys[m.key] = m
	}
	if i := slices.IndexFunc(m.list, func(s seenAddr) bool { return s.addr == addr }); i >= 0 {
		m.list = slices.Delete(m.list, i, i+1)
	}
	if n := len(m.list); n > 0 && t.Before(m.list[n-1].at) {
		t = m.list[n-1].at // out of order: kept in order, as windows keep it
	}
	m.list = append(m.list, seenAddr{addr, t})
	if len(m.list) > c.max {
		m.list = slices.Delete(m.list, 0, len(m.list)-c.max)
	}
	c.markDirty(m)
}

// since returns the addresses key's events came from after since.
func (c *contributors) since(key string, since time.Time) []netip.Addr {
	m := c.keys[key]
	if m == nil {
		return nil
	}
	var out []netip.Addr
	for _, s := range m.list {
		if s.at.After(since) {
			out = append(out, s.addr)
		}
	}
	return out
}

// forget drops a key; the next flush saves that it is gone, if it saved
// the key: most of a flood's keys come and go between two flushes.
func (c *contributors) forget(m *members) {
	delete(c.keys, m.key)
	if m.saved {
		c.gone = append(c.gone, m.key)
	}
}

// newest is when a key's newest address was seen.
func (m *members) newest() time.Time {
	if len(m.list) == 0 {
		return time.Time{}
	}
	return m.list[len(m.list)-1].at
}

// expire forgets the keys with no event after since.
func (c *contributors) expire(since time.Time) {
	for _, m := range c.keys {
		if !m.newest().After(since) {
			c.forget(m)
		}
	}
}

// flush calls save for every key changed since the last flush, with its
// addresses and when each was seen (nil for a key forgotten): those
// forgotten first, so that a key forgotten and seen again is saved as it
// is now. The slices are only good during the call.
func (c *contributors) flush(save func(key string, times []int64, addrs []netip.Addr)) {
	for _, k := range c.gone {
		save(k, nil, nil)
	}
	c.gone = c.gone[:0]
	for _, m := range c.dirty {
		m.dirty = false
		if c.keys[m.key] != m {
			continue // forgotten since: saved as gone
		}
		c.times, c.addrs = c.times[:0], c.addrs[:0]
		for _, s := range m.list {
			c.times, c.addrs = append(c.times, s.at.UnixNano()), append(c.addrs, s.addr)
		}
		m.saved = true
		save(m.key, c.times, c.addrs)
	}
	clear(c.dirty)
	c.dirty = c.dirty[:0]
}

// discard forgets what changed, for a pipeline that saves nothing.
func (c *contributors) discard() {
	for _, m := range c.dirty {
		m.dirty = false
	}
	clear(c.dirty)
	c.dirty, c.gone = c.dirty[:0], c.gone[:0]
}

// evict forgets the keys whose newest address was seen before before,
// but those keep keeps.
func (c *contributors) evict(before time.Time, keep func(key string) bool) int {
	n := 0
	for _, m := range c.keys {
		if m.newest().Before(before) && !keep(m.key) {
			c.forget(m)
			n++
		}
	}
	return n
}

// resave marks every key changed, for the next flush.
func (c *contributors) resave() {
	for _, m := range c.keys {
		c.markDirty(m)
	}
}

// restore sets a key's addresses as flush saved them, replacing what it
// had; none forgets it.
func (c *contributors) restore(key string, times []int64, addrs []netip.Addr) {
	delete(c.keys, key)
	if len(times) != len(addrs) || len(times) == 0 {
		return
	}
	m := &members{key: strings.Clone(key), saved: true}
	for i, a := range addrs {
		at := time.Unix(0, times[i]).UTC()
		if n := len(m.list); n > 0 && at.Before(m.list[n-1].at) {
			at = m.list[n-1].at
		}
		m.list = append(m.list, seenAddr{a, at})
	}
	if len(m.list) > c.max {
		m.list = slices.Delete(m.list, 0, len(m.list)-c.max)
	}
	c.keys[m.key] = m
}
