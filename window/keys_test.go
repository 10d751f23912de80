package window

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestKeyTableAgreesWithAMap adds and removes random keys — the empty
// one, long ones, many colliding in a small table — and checks every
// answer against a Go map, and that strings handed out never change.
func TestKeyTableAgreesWithAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	k := newKeyTable()
	want := map[string]int32{}
	handed := map[string]string{} // a string from key(), and what it said then
	for step := range 200000 {
		var key string
		switch r := rng.IntN(100); {
		case r == 0:
			key = ""
		case r == 1:
			key = fmt.Sprintf("%0300d", rng.IntN(50))
		default:
			key = fmt.Sprintf("k%d", rng.IntN(5000))
		}
		if rng.IntN(3) == 0 {
			idx := k.find([]byte(key))
			w, ok := want[key]
			if ok != (idx >= 0) || ok && idx != w {
				t.Fatalf("step %d: find(%q) = %d, want %d (%v)", step, key, idx, w, ok)
			}
			if ok {
				k.remove(idx)
				delete(want, key)
			}
			continue
		}
		idx, added := k.add([]byte(key))
		w, ok := want[key]
		if added == ok || ok && idx != w {
			t.Fatalf("step %d: add(%q) = %d, %v; want %d, %v", step, key, idx, added, w, !ok)
		}
		want[key] = idx
		if s := k.key(idx); s != key {
			t.Fatalf("step %d: key(%d) = %q, want %q", step, idx, s, key)
		} else if len(handed) < 1000 {
			handed[s] = key
		}
	}
	if k.len() != len(want) {
		t.Errorf("len %d, want %d", k.len(), len(want))
	}
	n := 0
	k.each(func(idx int32) {
		n++
		if want[k.key(idx)] != idx {
			t.Errorf("each: %q at %d, want %d", k.key(idx), idx, want[k.key(idx)])
		}
	})
	if n != len(want) {
		t.Errorf("each saw %d keys, want %d", n, len(want))
	}
	for s, was := range handed {
		if s != was {
			t.Errorf("a string handed out changed: %q, was %q", s, was)
		}
	}
}
