package window

import (
	"fmt"
	"math/rand/v2"
	"runtime"
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
		d := NewDistinct(limit, per)
		var times []time.Time
		var vals []int64
		now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
		for i := range 2000 {
			now = now.Add(time.Duration(rng.IntN(int(per/time.Second)/max(1, int(limit))+2)) * time.Second)
			v := Hash([]byte(fmt.Sprint(rng.IntN(values))))
			times, vals = append(times, now), append(vals, v)
			got := d.Add([]byte("k"), now, v)
			want := min(bruteDistinct(times, vals, now, per), limit+1)
			if got != want {
				t.Fatalf("seed %d event %d: %d distinct, brute force %d (limit %d)", seed, i, got, want, limit)
			}
			if when, ok := d.Below("k"); ok {
				if v := bruteDistinct(times, vals, when, per); v > limit {
					t.Fatalf("seed %d event %d: Below says %s, but %d distinct then", seed, i, when, v)
				}
				if v := bruteDistinct(times, vals, when.Add(-time.Second), per); v <= limit {
					t.Fatalf("seed %d event %d: Below says %s, but already %d a second before", seed, i, when, v)
				}
			} else if got > limit {
				t.Fatalf("seed %d event %d: above the limit and no Below", seed, i)
			}
			if i%500 == 499 { // a restart: saved and restored
				r := NewDistinct(limit, per)
				d.Flush(func(key string, st State) { r.Restore(key, st) })
				d = r
			}
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
	if n := len(d.keys["k"].times); n != 6 {
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
