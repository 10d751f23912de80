package parsers

import (
	"hash/maphash"

	"github.com/bombwatch/bombwatch/internal/hashslot"
)

// queueIndex finds a queue ID's message in a table of them: open
// addressing over slots of 8 bytes (hashslot: the ID's hash and its
// message's index), the ID itself read from the message only when the
// hash is the one looked for.
//
// Under a flood every line is a new message: a miss, an insert and, as
// the table is pruned, a delete each. A Go map of 131,072 IDs of 24
// bytes (about 5 MB) took a cache miss or two for each; the slots are
// 2 MB, and a miss reads one.
type queueIndex struct {
	seed  maphash.Seed
	slots []uint64
	n     int
}

func newQueueIndex() queueIndex { return queueIndex{seed: maphash.MakeSeed()} }

func (x *queueIndex) hash(q *QID) uint32 {
	h := maphash.Bytes(x.seed, q.b[:q.n])
	return uint32(h ^ h>>32)
}

// find returns the index of q's message, given the IDs of messages by
// index.
func (x *queueIndex) find(q QID, at func(int32) *QID) (int32, bool) {
	if x.n == 0 {
		return -1, false
	}
	h := x.hash(&q)
	mask := uint32(len(x.slots) - 1)
	for j := h & mask; ; j = (j + 1) & mask {
		s := x.slots[j]
		if s == 0 {
			return -1, false
		}
		if uint32(s>>32) == h {
			if i := int32(uint32(s)) - 1; *at(i) == q {
				return i, true
			}
		}
	}
}

// add records q's message at i; q must not be there already.
func (x *queueIndex) add(q QID, i int32) {
	if 4*(x.n+1) > 3*len(x.slots) {
		x.grow()
	}
	h := x.hash(&q)
	mask := uint32(len(x.slots) - 1)
	j := h & mask
	for x.slots[j] != 0 {
		j = (j + 1) & mask
	}
	x.slots[j] = hashslot.Entry(h, i)
	x.n++
}

// remove forgets q's message at i.
func (x *queueIndex) remove(q QID, i int32) {
	if hashslot.Remove(x.slots, x.hash(&q), i) {
		x.n--
	}
}

// grow doubles the slots (at least 1,024).
func (x *queueIndex) grow() {
	x.slots = hashslot.Rehash(x.slots, max(1024, 2*len(x.slots)))
}

// len is how many IDs the index holds.
func (x *queueIndex) len() int { return x.n }
