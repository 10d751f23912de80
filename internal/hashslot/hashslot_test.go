package hashslot

import "testing"

// find is a lookup as the callers make it: from h's place to an empty
// slot, the index of the entry with h (each test hash is one key's).
func find(slots []uint64, h uint32) (int32, bool) {
	mask := uint32(len(slots) - 1)
	for i := h & mask; slots[i] != 0; i = (i + 1) & mask {
		if uint32(slots[i]>>32) == h {
			return int32(uint32(slots[i])) - 1, true
		}
	}
	return -1, false
}

func insert(slots []uint64, h uint32, idx int32) {
	mask := uint32(len(slots) - 1)
	i := h & mask
	for slots[i] != 0 {
		i = (i + 1) & mask
	}
	slots[i] = Entry(h, idx)
}

// TestRemoveKeepsTheRunFindable: runs that collide and wrap past the
// table's end stay findable after any one entry is removed, and after a
// rehash into a larger table.
func TestRemoveKeepsTheRunFindable(t *testing.T) {
	// Hashes of 8 slots: homes 6, 6, 7, 7, 0, 6 — one run wrapping past the end.
	hashes := []uint32{6, 14, 7, 15, 8, 22}
	for gone := range hashes {
		slots := make([]uint64, 8)
		for i, h := range hashes {
			insert(slots, h, int32(i))
		}
		if !Remove(slots, hashes[gone], int32(gone)) {
			t.Fatalf("entry %d not found", gone)
		}
		if Remove(slots, hashes[gone], int32(gone)) {
			t.Fatalf("entry %d removed twice", gone)
		}
		for _, table := range [][]uint64{slots, Rehash(slots, 32)} {
			for i, h := range hashes {
				idx, ok := find(table, h)
				if want := i != gone; ok != want || ok && idx != int32(i) {
					t.Errorf("with %d removed (%d slots): find %d = %d %v", gone, len(table), h, idx, ok)
				}
			}
		}
	}
	if Remove(nil, 1, 0) {
		t.Error("removed from an empty table")
	}
}
