package window

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// TestPeaks: the peak is the highest measure of the buckets over within
// the history; the bucket being filled is not history yet; a restore from
// Flush gives the same.
func TestPeaks(t *testing.T) {
	p := NewPeaks(8 * 24 * time.Hour) // buckets of a day
	day := func(d int, h int) time.Time {
		return t0.Truncate(24*time.Hour).AddDate(0, 0, d).Add(time.Duration(h) * time.Hour)
	}
	p.Note(key("k"), day(0, 10), 40)
	p.Note(key("k"), day(0, 11), 55)
	p.Note(key("k"), day(0, 12), 20)
	if got := p.Peak("k", day(0, 23)); got != 0 {
		t.Errorf("peak within the first day = %d, want 0: not history yet", got)
	}
	if got := p.Peak("k", day(1, 1)); got != 55 {
		t.Errorf("peak the next day = %d, want 55", got)
	}
	p.Note(key("k"), day(3, 9), 500) // a day with more
	if got := p.Peak("k", day(3, 10)); got != 55 {
		t.Errorf("peak on the day of 500 = %d, want 55", got)
	}
	if got := p.Peak("k", day(4, 0)); got != 500 {
		t.Errorf("peak after it = %d, want 500", got)
	}
	r := NewPeaks(8 * 24 * time.Hour)
	p.Flush(func(k string, st State) { r.Restore(k, st) })
	if got := r.Peak("k", day(4, 0)); got != 500 {
		t.Errorf("restored peak = %d, want 500", got)
	}
	if got := r.Peak("k", day(12, 0)); got != 0 {
		t.Errorf("peak nine days on = %d, want 0: out of the history", got)
	}
	r.Expire(day(13, 0))
	if r.Len() != 0 {
		t.Errorf("%d keys after their history, want 0", r.Len())
	}
	if n := len(p.keys["k"].starts); n > peakBuckets+1 {
		t.Errorf("%d buckets kept", n)
	}
}

// BenchmarkPeaksMemory reports the memory a key with eight days of
// history costs (bytes/key).
func BenchmarkPeaksMemory(b *testing.B) {
	const keys = 100000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p := NewPeaks(8 * 24 * time.Hour)
	for k := range keys {
		key := []byte(fmt.Sprintf("user%d", k))
		for d := range 9 {
			p.Note(key, t0.Add(time.Duration(d)*24*time.Hour), int64(d+1))
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perKey := float64(after.HeapAlloc-before.HeapAlloc) / keys
	for b.Loop() {
		p.Peak("user7", t0.Add(9*24*time.Hour))
	}
	b.ReportMetric(perKey, "bytes/key")
	runtime.KeepAlive(p)
}
