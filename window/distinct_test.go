package window

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"
)

// bruteDistinct is the reference: how many different values were seen in
// (t-per, t].
func bruteDistinct(times []time.Time, values []int64, t time.Time, per time.Duration) int64 {
	seen := map[int64]bool{}
	for i, at := range times {
		if at.After(t.Add(-per)) && !at.After(t) {
			seen[values[i]] = true
		}
	}
	return int64(len(seen))
}

// TestDistinctAgainstBruteForce: on random streams — few values and
// many, sparse and dense, whole seconds — the count is exact up to
// limit+1 and limit+1 above, at every event; Below says when it falls back
// to the limit; and a restore from what Flush saved goes on the same.
func TestDistinctAgainstBruteForce(t *testing.T) {
	for seed := uint64(1); seed <= 60; seed++ {
		rng := rand.New(rand.NewPCG(seed, seed))
		limit := int64(1 + rng.IntN(12))
		per := time.Duration(10+rng.IntN(600)) * time.Second
		values := 1 + rng.IntN(40)
		nkeys := []int{1, 200}[seed%2] // one key, or many that come and go
		d := NewDistinct(limit, per)
		type hist struct {
			times []time.Time
			vals  []int64
		}
		hists := map[string]*hist{}
		saved := map[string]State{} // what Flush saved: a restart restores it
		now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
		for i := range 2000 {
			step := int(per/time.Second)/max(1, int(limit)) + 2
			if nkeys > 1 {
				step = max(1, step/10)
			}
			now = now.Add(time.Duration(rng.IntN(step)) * time.Second)
			k := fmt.Sprint("k", rng.IntN(nkeys))
			h := hists[k]
			if h == nil {
				h = &hist{}
				hists[k] = h
			}
			v := Hash([]byte(fmt.Sprint(rng.IntN(values))))
			h.times, h.vals = append(h.times, now), append(h.vals, v)
			got := d.Add([]byte(k), now, v)
			want := min(bruteDistinct(h.times, h.vals, now, per), limit+1)
			if got != want {
				t.Fatalf("seed %d event %d: %d distinct, brute force %d (limit %d)", seed, i, got, want, limit)
			}
			if when, ok := d.Below(k); ok {
				if v := bruteDistinct(h.times, h.vals, when, per); v > limit {
					t.Fatalf("seed %d event %d: Below says %s, but %d distinct then", seed, i, when, v)
				}
				if v := bruteDistinct(h.times, h.vals, when.Add(-time.Second), per); v <= limit {
					t.Fatalf("seed %d event %d: Below says %s, but already %d a second before", seed, i, when, v)
				}
			} else if got > limit {
				t.Fatalf("seed %d event %d: above the limit and no Below", seed, i)
			}
			if rng.IntN(100) == 0 {
				d.Expire(now)
			}
			if i%100 == 99 {
				d.Flush(func(key string, st State) {
					if st.Empty() {
						delete(saved, key)
						return
					}
					saved[key] = State{Times: slices.Clone(st.Times), Amounts: slices.Clone(st.Amounts), Tags: slices.Clone(st.Tags), Touched: st.Touched}
				})
				if i%500 == 499 { // a restart: saved and restored
					d = NewDistinct(limit, per)
					for key, st := range saved {
						d.Restore(key, st)
					}
				}
			}
		}
		// Past every window, every key is forgotten, in memory and saved.
		d.Expire(now.Add(per))
		d.Flush(func(key string, st State) {
			if !st.Empty() {
				t.Errorf("seed %d: %q saved after it expired", seed, key)
			}
			delete(saved, key)
		})
		if d.Len() != 0 || len(saved) != 0 {
			t.Errorf("seed %d: %d keys kept, %d saved after every window ended", seed, d.Len(), len(saved))
		}
	}
}

// TestDistinctMemoryIsBounded: a key keeps at most limit+1 values,
// however many it sees.
func TestDistinctMemoryIsBounded(t *testing.T) {
	d := NewDistinct(5, time.Hour)
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	for i := range 100000 {
		d.Add([]byte("k"), now.Add(time.Duration(i)*time.Millisecond), int64(i))
	}
	if n := d.count(d.slotOf("k")); n != 6 {
		t.Errorf("a key keeps %d values, want 6", n)
	}
}

// BenchmarkDistinctMemory reports the memory a key costs a Distinct with
// limit 5 once it has seen 6 values, each tagged as the pipeline tags it
// (bytes/key), and the time of an Add.
func BenchmarkDistinctMemory(b *testing.B) {
	const keys = 100000
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d := NewDistinct(5, 10*time.Minute)
	for k := range keys {
		key := []byte(fmt.Sprintf("user%d", k))
		for v := range 6 {
			d.Add(key, now, int64(v))
			d.Tag(1<<40 | uint64(k*6+v+1))
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perKey := float64(after.HeapAlloc-before.HeapAlloc) / keys
	key := []byte("hot")
	for i := 0; b.Loop(); i++ {
		d.Add(key, now.Add(time.Duration(i)*time.Millisecond), int64(i%40))
		d.Tag(1<<40 | uint64(i+1))
	}
	b.ReportMetric(perKey, "bytes/key")
	runtime.KeepAlive(d)
}

// BenchmarkDistinctOneValueKeys reports the memory of a key that saw one
// value — a network a botnet sent one message from — among 1M such keys.
func BenchmarkDistinctOneValueKeys(b *testing.B) {
	const keys = 1 << 20
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d := NewDistinct(10, time.Minute)
	for k := range keys {
		d.Add(fmt.Appendf(nil, "%d.%d.%d.0/24", 10+k>>16, k>>8&255, k&255), now, int64(k))
		d.Tag(1<<40 | uint64(k+1))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perKey := float64(after.HeapAlloc-before.HeapAlloc) / float64(d.Len())
	for i := 0; b.Loop(); i++ {
		d.Add([]byte("hot"), now.Add(time.Duration(i)*time.Millisecond), int64(i%40))
	}
	b.ReportMetric(perKey, "bytes/key")
	runtime.KeepAlive(d)
}
