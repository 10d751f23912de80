package state

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// shuffledStats are n records over the given minutes, in no order, as a
// batch's counters hand them on.
func shuffledStats(n int, minutes []int64) []Stat {
	r := rand.New(rand.NewPCG(1, 2))
	stats := make([]Stat, n)
	for i := range stats {
		stats[i] = Stat{Minute: minutes[r.IntN(len(minutes))], KeyType: statTypes[i%len(statTypes)],
			Key: fmt.Sprintf("user%d@example.org", i), Messages: int64(i%7 + 1), Bytes: int64(i * 100), Recipients: 1}
	}
	stats = append(stats, Stat{Minute: minutes[0], KeyType: "unknown_type", Key: "k", Messages: 1})
	return stats
}

// TestStatsComeBackInMinuteOrder: whatever order a batch's stats come in,
// and however far apart their minutes (a few, or more than are counted
// into: sorted then), they decode in minute order, every one as written.
func TestStatsComeBackInMinuteOrder(t *testing.T) {
	for _, tt := range []struct {
		name    string
		minutes []int64
	}{
		{"one minute", []int64{29_000_000}},
		{"a few minutes", []int64{29_000_003, 29_000_001, 29_000_002, 29_000_000}},
		{"months apart", []int64{29_000_000, 29_000_000 + 3*maxCountedMinutes, 29_000_000 + 1}},
		{"before 1970", []int64{-5, 0, 7}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stats := shuffledStats(5000, tt.minutes)
			written := slices.Clone(stats)
			var got []Stat
			if err := DecodeStats(EncodeStats(stats), func(st *Stat) { got = append(got, *st) }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(stats, written) {
				t.Error("EncodeStats changed its argument")
			}
			if !slices.IsSortedFunc(got, byMinute) {
				t.Error("stats decoded out of minute order")
			}
			byAll := func(a, b Stat) int {
				if c := byMinute(a, b); c != 0 {
					return c
				}
				return cmpStrings(a.KeyType+"\x00"+a.Key, b.KeyType+"\x00"+b.Key)
			}
			slices.SortFunc(got, byAll)
			slices.SortFunc(written, byAll)
			if !slices.Equal(got, written) {
				t.Errorf("decoded %d stats, not the %d written", len(got), len(written))
			}
		})
	}
	if b := EncodeStats(nil); len(b) != 0 {
		t.Errorf("no stats encoded as %d bytes", len(b))
	}
}

func cmpStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// BenchmarkEncodeStats: a batch's stats of a sendmail replay (about 7,500
// records over a few minutes; 662k over 88 batches of 1M lines).
func BenchmarkEncodeStats(b *testing.B) {
	stats := shuffledStats(7500, []int64{29_000_000, 29_000_001, 29_000_002})
	batch := make([]Stat, len(stats))
	b.ReportAllocs()
	for b.Loop() {
		copy(batch, stats) // as it came: an encoding that sorted it must sort it again
		EncodeStats(batch)
	}
}
