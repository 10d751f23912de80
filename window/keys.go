package window

import (
	"hash/maphash"
	"unsafe"
)

// keyTable gives keys dense indexes, 0 to n-1, without a Go string or a
// pointer per key: the keys' bytes are appended to one arena, and the
// table is open addressing (linear probing) over int32s. A million keys
// are a few large pointer-free slices, which the collector never scans,
// and a new key costs no allocation but the slices' growth.
//
// The arena is never written where a key was: a key handed out as a
// string (Key) stays valid however the table changes — a deleted key's
// bytes stay until the arena is rebuilt into a new one (compact), and the
// old one lives on as long as a string points into it.
type keyTable struct {
	seed  maphash.Seed
	slots []int32  // index+1 of the key hashed there; 0: empty
	hash  []uint32 // by index: the key's hash, for probing and growing
	loc   []uint64 // by index: live | offset<<24 | length in arena; 0: free
	arena []byte
	free  []int32 // indexes of deleted keys, for reuse
	n     int     // keys held
	dead  int     // bytes of the arena that deleted keys left
}

// maxKeyLen is the longest key a table holds: longer ones are cut there.
// A key is at most what a log line holds (input.MaxLine, 64 KiB), so this
// cuts none that a parser hands on.
const maxKeyLen = 1<<24 - 1

// live marks a used index in loc.
const live = 1 << 63

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
		if k.hash[s-1] == h && string(k.bytes(s-1)) == string(key) {
			return s - 1
		}
	}
}

// add returns key's index, adding it when it is new (added true).
func (k *keyTable) add(key []byte) (idx int32, added bool) {
	if len(key) > maxKeyLen {
		key = key[:maxKeyLen]
	}
	if 4*(k.n+1) > 3*len(k.slots) {
		k.grow()
	}
	h := k.sum(key)
	mask := uint32(len(k.slots) - 1)
	i := h & mask
	for ; k.slots[i] != 0; i = (i + 1) & mask {
		if s := k.slots[i]; k.hash[s-1] == h && string(k.bytes(s-1)) == string(key) {
			return s - 1, false
		}
	}
	if n := len(k.free); n > 0 {
		idx, k.free = k.free[n-1], k.free[:n-1]
	} else {
		idx = int32(len(k.loc))
		k.loc = append(k.loc, 0)
		k.hash = append(k.hash, 0)
	}
	k.loc[idx] = live | uint64(len(k.arena))<<24 | uint64(len(key))
	k.hash[idx] = h
	k.arena = append(k.arena, key...)
	k.slots[i] = idx + 1
	k.n++
	return idx, true
}

// bytes is the key at idx, in the arena.
func (k *keyTable) bytes(idx int32) []byte {
	l := k.loc[idx] &^ live
	off, n := l>>24, l&maxKeyLen
	return k.arena[off : off+n : off+n]
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
	mask := uint32(len(k.slots) - 1)
	i := k.hash[idx] & mask
	for k.slots[i] != idx+1 {
		i = (i + 1) & mask
	}
	// Backward shift: the keys after it in its run move up, so that a
	// probe never stops at the hole before reaching them.
	for j := (i + 1) & mask; k.slots[j] != 0; j = (j + 1) & mask {
		home := k.hash[k.slots[j]-1] & mask
		if (j-home)&mask >= (j-i)&mask {
			k.slots[i] = k.slots[j]
			i = j
		}
	}
	k.slots[i] = 0
	k.dead += int(k.loc[idx] & maxKeyLen)
	k.loc[idx] = 0
	k.free = append(k.free, idx)
	k.n--
	if k.dead > 1<<16 && k.dead > len(k.arena)/2 {
		k.compact()
	}
}

// reserve makes room for n keys.
func (k *keyTable) reserve(n int) {
	if k.n == 0 && 3*len(k.slots) < 4*n {
		k.loc, k.hash = make([]uint64, 0, n), make([]uint32, 0, n)
		k.resize(n)
	}
}

// grow doubles the slots.
func (k *keyTable) grow() { k.resize(k.n + 1) }

// resize makes the slots hold n keys at most three quarters full, at
// least twice what they were.
func (k *keyTable) resize(n int) {
	size := max(16, 2*len(k.slots))
	for 3*size < 4*n {
		size *= 2
	}
	n = size
	k.slots = make([]int32, n)
	mask := uint32(n - 1)
	for idx, l := range k.loc {
		if l == 0 {
			continue
		}
		i := k.hash[idx] & mask
		for k.slots[i] != 0 {
			i = (i + 1) & mask
		}
		k.slots[i] = int32(idx) + 1
	}
}

// compact copies the live keys to a new arena: the old one, and the
// strings that point into it, are left as they are.
func (k *keyTable) compact() {
	arena := make([]byte, 0, len(k.arena)-k.dead+len(k.arena)/8)
	for idx, l := range k.loc {
		if l == 0 {
			continue
		}
		b := k.bytes(int32(idx))
		k.loc[idx] = live | uint64(len(arena))<<24 | uint64(len(b))
		arena = append(arena, b...)
	}
	k.arena, k.dead = arena, 0
}

// len is how many keys the table holds.
func (k *keyTable) len() int { return k.n }

// each calls fn with the index of every key held; fn may remove it.
func (k *keyTable) each(fn func(idx int32)) {
	for idx, l := range k.loc {
		if l != 0 {
			fn(int32(idx))
		}
	}
}
