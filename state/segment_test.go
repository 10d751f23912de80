package state

import (
	"slices"
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
