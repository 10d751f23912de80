package state

import (
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestWindowEncoding: a window's times (negative, equal, far apart) come
// back as written, and a truncated one is an error, not a guess.
func TestWindowEncoding(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC).UnixNano()
	for _, times := range [][]int64{{0}, {-5, 0, 7}, {t0, t0, t0 + 1e12}} {
		b := AppendWindow(nil, &Window{Times: times, Touched: times[len(times)-1]})
		var w Window
		if err := DecodeWindow(b, &w); err != nil || !slices.Equal(w.Times, times) {
			t.Errorf("round trip of %v = %v, %v", times, w.Times, err)
		}
		if err := DecodeWindow(b[:len(b)-1], &w); err == nil {
			t.Errorf("decoded %v cut short", times)
		}
	}
}

// BenchmarkSegmentAdd: a batch's windows as the pipeline adds them, rule
// by rule, each a key of one event.
func BenchmarkSegmentAdd(b *testing.B) {
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC).UnixNano()
	rules := []string{"sender-flood/0", "client-flood/0", "client-flood/1", "botnet/0"}
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = "user" + strconv.Itoa(i) + "@example.org"
	}
	var s Segment
	w := Window{Times: []int64{t0}, Tags: []uint64{1<<40 | 7}, Touched: t0}
	b.ReportAllocs()
	for b.Loop() {
		s.Reset()
		for _, r := range rules {
			w.Rule = r
			for _, k := range keys {
				w.Key = k
				s.Add(&w)
			}
		}
	}
}
