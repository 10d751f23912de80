package report

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/state"
)

func TestParseWhatIf(t *testing.T) {
	parse := func(s string) (time.Duration, error) { return time.ParseDuration(s) }
	w, err := ParseWhatIf("sender 20/2m", parse)
	if err != nil || w.KeyType != "sender" || w.Limit != 20 || w.Per != 2*time.Minute {
		t.Errorf("%+v %v", w, err)
	}
	for _, bad := range []string{"sender", "helo 20/1m", "sender x/1m", "sender 20/30s", "sender 0/1m"} {
		if _, err := ParseWhatIf(bad, parse); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestWhatIfSlides(t *testing.T) {
	w := &WhatIf{KeyType: "sender", Limit: 5, Per: 2 * time.Minute}
	res := whatIf(w, func(yield func(string, map[int64]int64)) {
		yield("steady", map[int64]int64{1: 3, 3: 3, 5: 3})   // never 6 in two minutes
		yield("burst", map[int64]int64{10: 3, 11: 4, 20: 1}) // 7 in minutes 10-11
		yield("late", map[int64]int64{0: 5, 2: 5})           // 5 and 5, two minutes apart
	})
	if len(res.Keys) != 1 || res.Keys[0].Key != "burst" || res.Keys[0].Messages != 7 {
		t.Errorf("%+v", res)
	}
}

func TestCentilesAndDerived(t *testing.T) {
	c := centiles(map[int64]int64{5: 1, 1: 1, 3: 1, 2: 1, 4: 1, 100: 1})
	if c.P50 != 4 || c.Max != 100 || c.P99 != 100 {
		t.Errorf("%+v", c)
	}
	if c := centiles(nil); c != (Centile{}) {
		t.Errorf("of nothing: %+v", c)
	}
	for _, tt := range []struct {
		typ, key     string
		bits4, bits6 int
		want         string
	}{
		{"sender", "a@example.org", 24, 48, "example.org"},
		{"client_ip", "2001:db8:1:2::3", 24, 48, "2001:db8:1::/48"},
		{"client_ip", "192.0.2.77", 26, 64, "192.0.2.64/26"}, // the rules' prefix, not a fixed one
	} {
		if got, ok := derived(tt.typ, tt.key, tt.bits4, tt.bits6); !ok || got != tt.want {
			t.Errorf("derived(%s %s) = %q, %v; want %q", tt.typ, tt.key, got, ok, tt.want)
		}
	}
	if got, ok := derived("sender", "postmaster", 24, 48); ok {
		t.Errorf("a sender without a domain counts for %q", got)
	}
	if share(1, 3) != 0.3333 || share(1, 0) != 0 {
		t.Error("share")
	}
}

// fakeStats is a state.Reader of given stats and no blocks.
type fakeStats []state.Stat

func (f fakeStats) Stats(first, last int64, fn func(*state.Stat)) error {
	for i := range f {
		fn(&f[i])
	}
	return nil
}

func (fakeStats) Blocks(bool, time.Time) ([]state.Block, error) { return nil, nil }

// TestReportMemoryIsBounded: 300,000 senders of one message each and a
// bomber of 2,000, against a bound of 100,000 keys: the report lets the
// smallest go, keeps the bomber on top with its count, counts every key,
// and says that counts may be short and by how much.
func TestReportMemoryIsBounded(t *testing.T) {
	var stats fakeStats
	for i := range 300_000 {
		stats = append(stats, state.Stat{Minute: int64(i / 1000), KeyType: "sender", Key: fmt.Sprintf("s%d@example.net", i), Messages: 1})
		if i%150 == 0 {
			stats = append(stats, state.Stat{Minute: int64(i / 1000), KeyType: "sender", Key: "bomber@example.org", Messages: 1})
		}
	}
	r, err := Build(stats, Options{Since: time.Unix(0, 0), Until: time.Unix(1e6, 0), Top: 3})
	if err != nil {
		t.Fatal(err)
	}
	if top := r.Top["sender"]; len(top) != 3 || top[0].Key != "bomber@example.org" || top[0].Messages != 2000 {
		t.Errorf("top senders %+v", top)
	}
	a := r.Advisor["sender"]
	if a.Keys < 297_000 || a.Keys > 303_000 || a.Dropped < 200_000 || a.ShortBy != 1 {
		t.Errorf("advisor %+v: want about 300,001 keys (within 1%%), most let go, counts short by 1 at most", a)
	}
	if a.Minute.Max != 7 || a.Minute.P50 != 1 || a.Hour.Max != 400 {
		t.Errorf("busiest minute %+v, hour %+v: the bomber's 7 a minute, 400 an hour; 1 for the rest", a.Minute, a.Hour)
	}
	// Under the bound nothing is let go: the report is exact.
	small := stats[:5000]
	if r, _ := Build(small, Options{Since: time.Unix(0, 0), Until: time.Unix(1e6, 0)}); r.Advisor["sender"].Dropped != 0 || r.Advisor["sender"].ShortBy != 0 {
		t.Errorf("a small report let keys go: %+v", r.Advisor["sender"])
	}
}

// TestNthIsTheSortedValue: nth agrees with sorting, on runs of equal
// values, sorted and reversed runs and random ones.
func TestNthIsTheSortedValue(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 500 {
		n := 1 + rng.IntN(200)
		a := make([]int64, n)
		for i := range a {
			switch round % 4 {
			case 0:
				a[i] = 1
			case 1:
				a[i] = int64(i)
			case 2:
				a[i] = int64(n - i)
			default:
				a[i] = rng.Int64N(10)
			}
		}
		sorted := slices.Sorted(slices.Values(a))
		k := rng.IntN(n)
		if got := nth(slices.Clone(a), k); got != sorted[k] {
			t.Fatalf("nth(%v, %d) = %d, want %d", a, k, got, sorted[k])
		}
	}
}
