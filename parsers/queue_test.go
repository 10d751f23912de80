package parsers

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestQueueIndexAgreesWithAMap runs random adds and removes on the index
// and on a Go map side by side: every ID finds its message, a removed one
// none — across growth, and the backward shifts of removal in long runs.
func TestQueueIndexAgreesWithAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := newQueueIndex()
	var ids []QID // by message index
	model := map[QID]int32{}
	at := func(i int32) *QID { return &ids[i] }
	for step := range 200000 {
		q := MakeQID(fmt.Appendf(nil, "%X", rng.IntN(20000)))
		i, ok := x.find(q, at)
		want, wantOK := model[q]
		if ok != wantOK || ok && i != want {
			t.Fatalf("step %d: find %s = %d %v, want %d %v", step, q.String(), i, ok, want, wantOK)
		}
		if ok {
			x.remove(q, i)
			delete(model, q)
			ids[i] = QID{}
			continue
		}
		ids = append(ids, q)
		x.add(q, int32(len(ids)-1))
		model[q] = int32(len(ids) - 1)
	}
	if x.len() != len(model) {
		t.Fatalf("len %d, want %d", x.len(), len(model))
	}
	for q, want := range model {
		if i, ok := x.find(q, at); !ok || i != want {
			t.Fatalf("%s: %d %v, want %d", q.String(), i, ok, want)
		}
	}
}
