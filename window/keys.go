package window

import (
	"hash/maphash"
	"unsafe"

	"github.com/bombwatch/bombwatch/internal/hashslot"
)

// keyTable gives keys dense indexes, 0 to n-1, without a Go string or a
// pointer per key: the keys' bytes are appended to an arena of 1 MiB
// pages, and the table is open addressing over 8-byte slots (hashslot).
// A million keys are a few large pointer-free slices, which the collector
// never scans, and a new key costs no allocation but a page now and then.
//
// The arena is never written where a key was: a key handed out as a
// string (key) stays valid however the table changes — a deleted key's
// bytes stay until the arena is rebuilt into new pages (compact), and the
// old ones live on as long as a string points into them.
type keyTable struct {
	seed maphash.Seed
	// slots hold the hash of the key there and its index+1 (hash<<32 |
	// index+1; 0: empty): a probe reads the arena only for a key whose
	// hash is the one looked for.
	slots []uint64
	loc   pages[uint64] // by index: live | offset<<16 | length; 0: free
	arena [][]byte      // pages of arenaPage bytes, filled in order
	free  []int32       // indexes of deleted keys, for reuse
	n     int           // keys held
	used  int           // bytes of the arena holding keys
	held  int           // bytes of the arena's pages
}

const (
	// maxKeyLen is the longest key a table holds: longer ones are cut
	// there. A key is part of a log line, at most input.MaxLine (64 KiB)
	// with the rest of the line: this cuts none that a parser hands on.
	maxKeyLen = 1<<16 - 1
	arenaBits = 20
	arenaPage = 1 << arenaBits
	live      = 1 << 63 // marks a used index in loc
)

func newKeyTable() *keyTable {
	return &keyTable{seed: maphash.MakeSeed()}
}

func (k *keyTable) sum(key []byte) uint32 {
	h := maphash.Bytes(k.seed, key)
	return uint32(h ^ h>>32)
}

// find returns key's index, or -1.
func (k *keyTable) find(key []byte) int32 {
	if len(k.slots) == 0 {
		return -1
	}
	if len(key) > maxKeyLen {
		key = key[:maxKeyLen]
	}
	h := k.sum(key)
	mask := uint32(len(k.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := k.slots[i]
		if s == 0 {
			return -1
		}
		if uint32(s>>32) == h && string(k.bytes(int32(s)-1)) == string(key) {
			return int32(s) - 1
		}
	}
}

// add returns key's index, adding it when it is new (added true).
func (k *keyTable) add(key []byte) (idx int32, added bool) {
	if len(key) > maxKeyLen {
		key = key[:maxKeyLen]
	}
	if 4*(k.n+1) > 3*len(k.slots) {
		k.resize(k.n + 1)
	}
	h := k.sum(key)
	mask := uint32(len(k.slots) - 1)
	i := h & mask
	for ; k.slots[i] != 0; i = (i + 1) & mask {
		if s := k.slots[i]; uint32(s>>32) == h && string(k.bytes(int32(s)-1)) == string(key) {
			return int32(s) - 1, false
		}
	}
	if n := len(k.free); n > 0 {
		idx, k.free = k.free[n-1], k.free[:n-1]
	} else {
		idx = k.loc.Add()
	}
	*k.loc.At(idx) = live | uint64(k.store(key))<<16 | uint64(len(key))
	k.slots[i] = hashslot.Entry(h, idx)
	k.n++
	return idx, true
}

// store appends key to the arena and returns its offset. A key never
// spans two pages.
func (k *keyTable) store(key []byte) int {
	last := len(k.arena) - 1
	if last < 0 || len(k.arena[last])+len(key) > cap(k.arena[last]) {
		// A page is never grown in place (that would copy it): a new
		// one, small for a table of few keys, up to arenaPage.
		size := arenaPage
		if last < 8 {
			size = max(arenaPage>>(2*(8-last-1)), len(key))
		}
		k.arena = append(k.arena, make([]byte, 0, size))
		k.held += size
		last++
	}
	off := last<<arenaBits + len(k.arena[last])
	k.arena[last] = append(k.arena[last], key...)
	k.used += len(key)
	return off
}

// bytes is the key at idx, in the arena.
func (k *keyTable) bytes(idx int32) []byte {
	l := *k.loc.At(idx) &^ live
	off, n := int(l>>16), int(l&maxKeyLen)
	page, at := off>>arenaBits, off&(arenaPage-1)
	return k.arena[page][at : at+n : at+n]
}

// key is the key at idx as a string, without a copy: the arena is never
// written where a key was (see keyTable).
func (k *keyTable) key(idx int32) string {
	b := k.bytes(idx)
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// remove deletes the key at idx; idx is free for another key.
func (k *keyTable) remove(idx int32) {
	hashslot.Remove(k.slots, k.sum(k.bytes(idx)), idx)
	k.used -= len(k.bytes(idx))
	*k.loc.At(idx) = 0
	k.free = append(k.free, idx)
	k.n--
	if k.held > 4*arenaPage && k.used < k.held/3 {
		k.compact()
	}
}

// resize makes the slots hold n keys at most three quarters full, at
// least twice what they were.
func (k *keyTable) resize(n int) {
	size := max(16, 2*len(k.slots))
	for 3*size < 4*n {
		size *= 2
	}
	k.slots = hashslot.Rehash(k.slots, size)
}

// compact copies the live keys to new pages: the old ones, and the
// strings that point into them, are left as they are.
func (k *keyTable) compact() {
	old := k.arena
	k.arena, k.used, k.held = nil, 0, 0
	for idx := range k.loc.Len() {
		l := *k.loc.At(idx)
		if l == 0 {
			continue
		}
		l &^= live
		off, n := int(l>>16), int(l&maxKeyLen)
		page, at := off>>arenaBits, off&(arenaPage-1)
		*k.loc.At(idx) = live | uint64(k.store(old[page][at:at+n]))<<16 | uint64(n)
	}
}

// len is how many keys the table holds.
func (k *keyTable) len() int { return k.n }

// each calls fn with the index of every key held; fn may remove it.
func (k *keyTable) each(fn func(idx int32)) {
	for idx := range k.loc.Len() {
		if *k.loc.At(idx) != 0 {
			fn(idx)
		}
	}
}
