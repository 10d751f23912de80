// Package hashslot is the open addressing of the tables that index
// millions of keys — the windows' key table, the Postfix queue's index:
// slots of 8 bytes, each a key's 32-bit hash and its index+1 in the
// caller's own table (0: empty), probed linearly from hash & (len-1). The
// keys stay with the caller, read only where a slot's hash is the one
// looked for; so a probe costs a cache miss, and growing the table never
// reads a key.
package hashslot

// Entry is the slot of a key of hash h at index idx.
func Entry(h uint32, idx int32) uint64 { return uint64(h)<<32 | uint64(idx+1) }

// Remove empties the slot of idx, looked for from h's place, and reports
// whether it was there. The entries after it in its run move back, so
// that a probe never stops at the hole before reaching them.
func Remove(slots []uint64, h uint32, idx int32) bool {
	if len(slots) == 0 {
		return false
	}
	mask := uint32(len(slots) - 1)
	i := h & mask
	for uint32(slots[i]) != uint32(idx+1) {
		if slots[i] == 0 {
			return false
		}
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; slots[j] != 0; j = (j + 1) & mask {
		home := uint32(slots[j]>>32) & mask
		if (j-home)&mask >= (j-i)&mask {
			slots[i] = slots[j]
			i = j
		}
	}
	slots[i] = 0
	return true
}

// Rehash returns a table of size slots (a power of two, larger than the
// entries of old) holding old's entries, each placed by the hash it holds.
func Rehash(old []uint64, size int) []uint64 {
	slots := make([]uint64, size)
	mask := uint32(size - 1)
	for _, s := range old {
		if s == 0 {
			continue
		}
		i := uint32(s>>32) & mask
		for slots[i] != 0 {
			i = (i + 1) & mask
		}
		slots[i] = s
	}
	return slots
}
