package state

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// shuffledStats are n records over the given minutes, in no order.
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

// TestStatsComeBackInMinuteOrder: whatever order stats are added in, and
// through Take from batch to batch, they are saved in minute order, every
// one as written.
func TestStatsComeBackInMinuteOrder(t *testing.T) {
	for _, tt := range []struct {
		name    string
		minutes []int64
	}{
		{"one minute", []int64{29_000_000}},
		{"a few minutes", []int64{29_000_003, 29_000_001, 29_000_002, 29_000_000}},
		{"months apart", []int64{29_000_000, 29_000_000 + 200_000, 29_000_000 + 1}},
		{"before 1970", []int64{-5, 0, 7}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			written := shuffledStats(5000, tt.minutes)
			var batch, part Stats
			for i, st := range written {
				part.Add(st)
				if i%700 == 0 {
					batch.Take(&part)
				}
			}
			batch.Take(&part)
			if part.Size() != 0 {
				t.Error("Take left the records in what it took from")
			}
			var got []Stat
			if err := DecodeStats(batch.Encoded(), func(st *Stat) { got = append(got, *st) }); err != nil {
				t.Fatal(err)
			}
			if !slices.IsSortedFunc(got, byMinute) {
				t.Error("stats decoded out of minute order")
			}
			first, last, ok := batch.Minutes()
			if !ok || first != slices.Min(tt.minutes) || last != slices.Max(tt.minutes) {
				t.Errorf("minutes %d to %d (%v), want %d to %d", first, last, ok, slices.Min(tt.minutes), slices.Max(tt.minutes))
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
	var none Stats
	if _, _, ok := none.Minutes(); ok || len(none.Encoded()) != 0 {
		t.Error("no stats have minutes or bytes")
	}
}

// TestStatsAppendAsAddWrites: the counters' way of writing a record gives
// the bytes of the general one, an address's text included.
func TestStatsAppendAsAddWrites(t *testing.T) {
	addrs := []string{"192.0.2.1", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "::ffff:192.0.2.1", "fe80::1%eth0"}
	var appended, added Stats
	for i, a := range addrs {
		appended.AppendAddr(int64(i), netip.MustParseAddr(a), 1, 2, 3)
		added.Add(Stat{Minute: int64(i), KeyType: "client_ip", Key: a, Messages: 1, Bytes: 2, Recipients: 3})
	}
	appended.Append(9, StatSender, "a@example.org", 4, 5, 6)
	added.Add(Stat{Minute: 9, KeyType: "sender", Key: "a@example.org", Messages: 4, Bytes: 5, Recipients: 6})
	if !slices.Equal(appended.Encoded(), added.Encoded()) {
		t.Errorf("appended %q, added %q", appended.Encoded(), added.Encoded())
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
