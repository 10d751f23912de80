package window

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func key(s string) []byte { return []byte(s) }

func TestCount(t *testing.T) {
	tests := []struct {
		name  string
		limit int64
		per   time.Duration
		times []float64 // seconds after t0, one key
		want  []int64   // measure after each Add; above the limit, at least limit+1
	}{
		{"under the limit", 3, time.Minute, []float64{0, 10, 20}, []int64{1, 2, 3}},
		{"crossing", 3, time.Minute, []float64{0, 10, 20, 30}, []int64{1, 2, 3, 4}},
		{"kept at limit+1", 2, time.Minute, []float64{0, 1, 2, 3, 4}, []int64{1, 2, 3, 3, 3}},
		// The window is (t-per, t]: an event exactly per ago is outside.
		{"edge is outside", 2, time.Minute, []float64{0, 30, 60}, []int64{1, 2, 2}},
		{"just inside", 2, time.Minute, []float64{0, 30, 59.999}, []int64{1, 2, 3}},
		// A fixed window at the minute would reset at 60 s and miss this.
		{"across a boundary", 3, time.Minute, []float64{50, 55, 58, 61}, []int64{1, 2, 3, 4}},
		{"slides out", 2, time.Minute, []float64{0, 1, 2, 61.5, 62.5}, []int64{1, 2, 3, 2, 2}},
		// A clock stepped back counts the event at the newest time.
		{"backwards", 5, time.Minute, []float64{100, 50, 159}, []int64{1, 2, 3}},
		{"limit zero", 0, time.Minute, []float64{0, 1}, []int64{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := New(tt.limit, tt.per)
			for i, s := range tt.times {
				if got := w.Add(key("k"), at(s), 1); got != tt.want[i] {
					t.Errorf("Add #%d at %gs = %d, want %d", i, s, got, tt.want[i])
				}
			}
		})
	}
}

// bruteSum is the reference: the sum of amounts in (t-per, t], with every
// time on the window's resolution grid.
func bruteSum(times []time.Time, amounts []int64, t time.Time, per time.Duration) int64 {
	res := int64(Resolution(per))
	grid := func(t time.Time) time.Time { ns := t.UnixNano(); return time.Unix(0, ns-ns%res) }
	t = grid(t)
	var sum int64
	for i, ti := range times {
		ti = grid(ti)
		if ti.After(t.Add(-per)) && !ti.After(t) {
			sum += amounts[i]
		}
	}
	return sum
}

// TestAgainstBruteForce drives windows with random traffic — counts and
// amounts, bursts and gaps, several keys — and compares every answer with
// a sum over all events.
func TestAgainstBruteForce(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 1))
		limit := int64(1 + rng.IntN(20))
		per := time.Duration(1+rng.IntN(120)) * time.Second
		amounts := rng.IntN(2) == 1
		if amounts {
			limit *= 1000
		}
		w := New(limit, per)
		type ev struct {
			times   []time.Time
			amounts []int64
		}
		hist := map[string]*ev{}
		// What Flush saved: a restart restores a new Window from it.
		saved := map[string]State{}
		nkeys := []int{5, 300}[seed%2]
		now := t0
		for i := range 3000 {
			now = now.Add(time.Duration(rng.ExpFloat64() * float64(per) / float64(1+rng.IntN(30))))
			k := fmt.Sprint("k", rng.IntN(nkeys))
			a := int64(1)
			if amounts {
				a = 1 + rng.Int64N(limit/3)
			}
			h := hist[k]
			if h == nil {
				h = &ev{}
				hist[k] = h
			}
			h.times = append(h.times, now)
			h.amounts = append(h.amounts, a)
			got := w.Add(key(k), now, a)
			want := bruteSum(h.times, h.amounts, now, per)
			if want <= limit && got != want || want > limit && got <= limit {
				t.Fatalf("seed %d event %d: measure %d, brute force %d (limit %d)", seed, i, got, want, limit)
			}
			// Below: the measure at the time it names is at or under the
			// limit, and just before it, above.
			if when, ok := w.Below(k); ok {
				if v := bruteSum(h.times, h.amounts, when, per); v > limit {
					t.Fatalf("seed %d event %d: at Below %v the sum is %d > %d", seed, i, when, v, limit)
				}
				if v := bruteSum(h.times, h.amounts, when.Add(-time.Nanosecond), per); v <= limit {
					t.Fatalf("seed %d event %d: just before Below the sum is %d <= %d", seed, i, v, limit)
				}
			} else if want > limit {
				t.Fatalf("seed %d event %d: over the limit and no Below", seed, i)
			}
			if rng.IntN(200) == 0 {
				w.Expire(now)
			}
			if v := w.Value(k, now); want <= limit && v != want {
				t.Fatalf("seed %d event %d: Value %d, brute force %d", seed, i, v, want)
			}
			if rng.IntN(50) == 0 {
				w.Flush(func(k string, st State) {
					if st.Empty() {
						delete(saved, k)
						return
					}
					saved[k] = State{Times: slices.Clone(st.Times), Amounts: slices.Clone(st.Amounts), Tags: slices.Clone(st.Tags),
						Offset: st.Offset, Touched: st.Touched}
				})
				if rng.IntN(3) == 0 { // a restart
					w = New(limit, per)
					for k, st := range saved {
						w.Restore(k, st)
					}
				}
			}
		}
		// Past every window, every key is forgotten, in memory and saved.
		w.Expire(now.Add(per))
		w.Flush(func(k string, st State) {
			if !st.Empty() {
				t.Errorf("seed %d: %q saved after it expired", seed, k)
			}
			delete(saved, k)
		})
		if w.Len() != 0 || len(saved) != 0 {
			t.Errorf("seed %d: %d keys kept, %d saved after every window ended", seed, w.Len(), len(saved))
		}
	}
}

func TestMemoryIsBounded(t *testing.T) {
	w := New(10, time.Minute)
	for i := range 10000 {
		w.Add(key("k"), at(float64(i)/100), 1)
	}
	if n := w.kept("k"); n > 11 {
		t.Errorf("kept %d entries, want at most limit+1 = 11", n)
	}
	if c := cap(w.more.At(w.slots.At(w.keys.find(key("k"))).more - 1).times); c > 64 {
		t.Errorf("capacity %d for 11 events", c)
	}
	// Small amounts against a large limit: one entry per interval of the
	// resolution, so at most maxBuckets+1 however dense the traffic.
	b := New(1<<40, time.Hour)
	for i := range 100 * maxBuckets {
		b.Add(key("k"), at(float64(i)/50), 1+int64(i%3))
	}
	if n := b.kept("k"); n > maxBuckets+1 {
		t.Errorf("kept %d entries, bound %d", n, maxBuckets+1)
	}
	for i := range 1000 {
		w.Add(key(fmt.Sprint("key", i)), at(200), 1)
	}
	w.Expire(at(259))
	if w.Len() != 1000 {
		t.Errorf("after Expire inside the window: %d keys, want 1000", w.Len())
	}
	w.Expire(at(260))
	if w.Len() != 0 {
		t.Errorf("after Expire past the window: %d keys, want 0", w.Len())
	}
}

func TestBelow(t *testing.T) {
	w := New(10, 30*time.Minute)
	for i := range 11 {
		w.Add(key("k"), at(float64(i*60)), 1)
	}
	// Over with 11 in 10 minutes: back to 10 when the first leaves.
	when, ok := w.Below("k")
	if !ok || !when.Equal(at(30*60)) {
		t.Errorf("Below = %v, %v; want %v", when, ok, at(30*60))
	}
	if _, ok := New(10, time.Minute).Below("none"); ok {
		t.Error("Below of an unknown key")
	}
}

// TestForgive is smtp-dos-detector's behind counter: threshold 5 in 10 s,
// behind 10. The 6th mail starts a block; the count restarts at -10, so
// the 6th to the 15th are covered and the 16th brings it back to 0.
func TestForgive(t *testing.T) {
	w := New(5, 10*time.Second)
	var got []int64
	for i := 1; i <= 17; i++ {
		v := w.Add(key("host"), at(float64(i)*0.1), 1)
		if i == 6 {
			w.Forgive("host", 10, at(float64(i)*0.1))
			v = w.Value("host", at(float64(i)*0.1))
		}
		got = append(got, v)
	}
	want := []int64{1, 2, 3, 4, 5, -10, -9, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("measures %v\nwant     %v", got, want)
	}
	// The offset lapses when the key is idle for a window.
	w.Forgive("host", 10, at(100))
	if v := w.Value("host", at(105)); v != -10 {
		t.Errorf("forgiven and idle 5 s: %d, want -10", v)
	}
	if v := w.Value("host", at(110)); v != 0 {
		t.Errorf("forgiven and idle 10 s: %d, want 0", v)
	}
	if v := w.Add(key("host"), at(111), 1); v != 1 {
		t.Errorf("after the offset lapsed: %d, want 1", v)
	}
}

func TestFlushAndRestore(t *testing.T) {
	w := New(3, time.Minute)
	for _, s := range []float64{0, 1, 2, 3, 4} {
		w.Add(key("a"), at(s), 1)
	}
	w.Add(key("b"), at(5), 1000)
	w.Forgive("c", 4, at(5))
	saved := map[string]State{}
	w.Flush(func(k string, st State) {
		saved[k] = State{Times: append([]int64(nil), st.Times...), Amounts: append([]int64(nil), st.Amounts...), Offset: st.Offset, Touched: st.Touched}
	})
	if len(saved) != 3 || len(saved["a"].Times) != 4 || saved["b"].Amounts[0] != 1000 || saved["c"].Offset != -4 {
		t.Fatalf("flushed %+v", saved)
	}
	w.Flush(func(k string, _ State) { t.Errorf("second flush saved %q again", k) })

	r := New(3, time.Minute)
	for k, st := range saved {
		r.Restore(k, st)
	}
	for _, k := range []string{"a", "b", "c"} {
		if got, want := r.Add(key(k), at(10), 1), w.Add(key(k), at(10), 1); got != want {
			t.Errorf("%s: restored window says %d, original %d", k, got, want)
		}
	}
	w.Expire(at(200))
	forgotten := 0
	w.Flush(func(_ string, st State) {
		if st.Empty() {
			forgotten++
		}
	})
	if forgotten != 3 {
		t.Errorf("flush after expiry forgot %d keys, want 3", forgotten)
	}
}

// TestFlushNamesAForgottenKeyOnlyIfSaved: a key that came and went between
// two Flushes is not named — the store holds nothing of it — while one a
// Flush saved, or Restore set, is named as forgotten; and one forgotten
// and back again is named gone first, then as it is now.
func TestFlushNamesAForgottenKeyOnlyIfSaved(t *testing.T) {
	for _, m := range []Measure{New(3, time.Minute), NewDistinct(3, time.Minute)} {
		t.Run(fmt.Sprintf("%T", m), func(t *testing.T) {
			type saved struct {
				key   string
				empty bool
			}
			flush := func() (got []saved) {
				m.Flush(func(k string, st State) { got = append(got, saved{k, st.Empty()}) })
				return got
			}
			m.Add(key("saved"), at(0), 1)
			m.Add(key("back"), at(0), 1)
			m.Restore("restored", State{Times: []int64{at(0).UnixNano()}, Amounts: []int64{7}, Touched: at(0).UnixNano()})
			if got := flush(); len(got) != 2 {
				t.Fatalf("first flush: %v, want saved and back", got)
			}
			m.Add(key("passing"), at(1), 1) // and gone before the next Flush
			m.Expire(at(65))
			m.Add(key("back"), at(66), 1)
			got := flush()
			slices.SortStableFunc(got, func(a, b saved) int { return strings.Compare(a.key, b.key) })
			want := []saved{{"back", true}, {"back", false}, {"restored", true}, {"saved", true}}
			if !slices.Equal(got, want) {
				t.Errorf("flush after expiry: %v, want %v", got, want)
			}
			m.Expire(at(200))
			got = flush()
			if want := []saved{{"back", true}}; !slices.Equal(got, want) {
				t.Errorf("flush after all expired: %v, want %v", got, want)
			}
		})
	}
}

// TestFMLWorkedExample: mails at 0, 2.5, 5, 7.5 and 10 s give, at the
// fifth, E{t} = 1/10 + 1/7.5 + 1/5 + 1/2.5.
func TestFMLWorkedExample(t *testing.T) {
	b := NewBurst(time.Hour)
	var et float64
	for _, s := range []float64{0, 2.5, 5, 7.5, 10} {
		et, _, _ = b.Add(key("k"), at(s), time.Time{})
	}
	want := 1/10.0 + 1/7.5 + 1/5.0 + 1/2.5
	if math.Abs(et-want) > 1e-9 || math.Abs(et-0.8333) > 0.001 {
		t.Errorf("E{t} = %v, want %v", et, want)
	}
	if IsBomb(et, 0, false, 1, 3) {
		t.Error("0.833 is no bomb with hard 3")
	}
}

func TestBurstDates(t *testing.T) {
	// Mails delivered slowly but written back to back (Date 1 s apart: the
	// 3 s epsilon applies): E{d} outgrows E{t}.
	b := NewBurst(time.Hour)
	var et, ed float64
	var has bool
	for i := range 6 {
		et, ed, has = b.Add(key("k"), at(float64(i*60)), at(float64(i)))
	}
	wantD := 1/5.0 + 1/4.0 + 3*(1/3.0) // gaps 5, 4, 3, 2, 1 s; under 3 s counts as 3
	if !has || math.Abs(ed-wantD) > 1e-9 {
		t.Errorf("E{d} = %v (%v), want %v", ed, has, wantD)
	}
	if !IsBomb(et, ed, has, 1.0, 3.0) {
		t.Errorf("E{t} %v, E{d} %v: a bomb by soft", et, ed)
	}
	// Events older than expire drop out; so do keys.
	b2 := NewBurst(time.Minute)
	b2.Add(key("k"), at(0), time.Time{})
	if et, _, _ := b2.Add(key("k"), at(61), time.Time{}); et != 0 {
		t.Errorf("E{t} after expiry = %v", et)
	}
	b2.Expired(at(200))
	if b2.Len() != 0 {
		t.Errorf("keys after Expired: %d", b2.Len())
	}
	// Same-second events add 1 each.
	b3 := NewBurst(time.Hour)
	b3.Add(key("k"), at(0), time.Time{})
	if et, _, _ := b3.Add(key("k"), at(0), time.Time{}); et != 1 {
		t.Errorf("same-second E{t} = %v, want 1", et)
	}
}

// The window answers whether a key sent more than 10 messages within any
// minute.
func Example() {
	w := New(10, time.Minute)
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 11; i++ {
		if w.Add([]byte("bomber@example.com"), start.Add(time.Duration(i)*5*time.Second), 1) > 10 {
			fmt.Println("over the limit at message", i+1)
		}
	}
	// Output: over the limit at message 11
}

func BenchmarkAdd(b *testing.B) {
	w := New(30, time.Minute)
	keys := make([][]byte, 1000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "sender%d@example.com", i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		w.Add(keys[i%len(keys)], t0.Add(time.Duration(i)*time.Millisecond), 1)
		if i%100000 == 0 {
			w.Flush(func(string, State) {})
		}
	}
}

// BenchmarkMillionKeys sends events from 1M distinct keys through a window,
// each tagged as the pipeline tags it. bytes/key is the heap a key costs
// with the one event a flood of forged senders gives each, its key
// included; the loop then times more events over the same keys.
func BenchmarkMillionKeys(b *testing.B) {
	const n = 1 << 20
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "sender%d@example.com", i)
	}
	w := New(30, time.Hour)
	add := func(i int) {
		w.Add(keys[i%n], t0.Add(time.Duration(i)*time.Microsecond), 1)
		w.Tag(1<<40 | uint64(i+1))
	}
	var before, after runtimeMem
	before.read()
	for i := range n {
		add(i)
	}
	after.read()
	perKey := float64(after.heap-before.heap) / float64(w.Len())
	i := n
	for b.Loop() {
		add(i)
		i++
	}
	b.ReportMetric(float64(i-n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(perKey, "bytes/key") // after the loop: its start drops what was reported

}

// TestResolution: the resolution divides the window into at most 4096
// intervals, and whole seconds are on its grid, so a syslog stamp, and a
// release time computed from one, are exact.
func TestResolution(t *testing.T) {
	for _, c := range []struct {
		per, want time.Duration
	}{
		{time.Minute, time.Second / 64},
		{10 * time.Minute, time.Second / 5},
		{30 * time.Minute, time.Second / 2},
		{time.Hour, time.Second},
		{24 * time.Hour, 24 * time.Second},
		{7 * 24 * time.Hour, 150 * time.Second},
		{1500 * time.Millisecond, 1500 * time.Millisecond / 4000},
	} {
		if got := Resolution(c.per); got != c.want {
			t.Errorf("Resolution(%v) = %v, want %v", c.per, got, c.want)
		}
	}
	for per := time.Second; per <= 8*24*time.Hour; per += 7 * time.Second {
		r := Resolution(per)
		if per%r != 0 || per/r > maxBuckets || time.Second%r != 0 && r%time.Second != 0 {
			t.Fatalf("Resolution(%v) = %v", per, r)
		}
	}
}

// TestSteadyRateStaysUnderTheLimit: a key sending steadily under its limit
// is never over it, however long it goes on and however many events a
// window holds. The windows once merged entries past 1,024 and turned the
// measure into a running total: a steady 2,000 a minute crossed a limit of
// 5,000, and 12 MB per 10 minutes one of 50 MB.
func TestSteadyRateStaysUnderTheLimit(t *testing.T) {
	for _, c := range []struct {
		name   string
		limit  int64
		per    time.Duration
		gap    time.Duration
		amount int64
	}{
		{"count 2000/min under 5000/min", 5000, time.Minute, 30 * time.Millisecond, 1},
		{"bytes 12MB/10min under 50MB/10min", 50_000_000, 10 * time.Minute, 100 * time.Millisecond, 12_000_000 / 6000},
		{"whole seconds, 1h", 4000, time.Hour, time.Second, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := New(c.limit, c.per)
			now := t0
			for i := range 200_000 {
				if v := w.Add(key("k"), now, c.amount); v > c.limit {
					t.Fatalf("event %d at %v: measure %d over the limit %d", i, now.Sub(t0), v, c.limit)
				}
				now = now.Add(c.gap)
			}
		})
	}
}

// TestLongDenseWindowsAgainstBruteForce: long windows holding thousands of
// events, counts and bytes, against the sum of every event in the window
// at every event (from prefix sums: the times only grow).
func TestLongDenseWindowsAgainstBruteForce(t *testing.T) {
	for seed := range uint64(6) {
		rng := rand.New(rand.NewPCG(seed, 7))
		per := []time.Duration{10 * time.Minute, time.Hour, 24 * time.Hour}[seed%3]
		res := int64(Resolution(per))
		bytes := seed%2 == 1
		limit := int64(3000 + rng.IntN(3000))
		if bytes {
			limit *= 50_000
		}
		w := New(limit, per)
		var grid []int64 // event times on the resolution's grid
		prefix := []int64{0}
		now := t0
		// Bursts and lulls around the limit's rate, so that the sum goes
		// over and under it many times.
		mean := float64(per) / float64(limit)
		if bytes {
			mean = float64(per) / float64(limit/50_000)
		}
		for i := range 30_000 {
			f := 0.5 + rng.Float64()
			if (i/2000)%2 == 1 {
				f *= 3
			}
			now = now.Add(time.Duration(rng.ExpFloat64() * mean * f))
			a := int64(1)
			if bytes {
				a = 1 + rng.Int64N(100_000)
			}
			ns := now.UnixNano()
			g := ns - ns%res
			grid = append(grid, g)
			prefix = append(prefix, prefix[len(prefix)-1]+a)
			first := sort.Search(len(grid), func(j int) bool { return grid[j] > g-int64(per) })
			want := prefix[len(grid)] - prefix[first]
			got := w.Add(key("k"), now, a)
			if want <= limit && got != want || want > limit && got <= limit {
				t.Fatalf("seed %d per %v event %d: measure %d, brute force %d (limit %d)", seed, per, i, got, want, limit)
			}
			if n := w.kept("k"); n > maxBuckets+1 {
				t.Fatalf("seed %d: %d entries", seed, n)
			}
		}
	}
}

// kept is how many entries a key keeps.
func (w *Window) kept(k string) int {
	n := 0
	if s := w.slotOf(k); s != nil {
		w.each(s, func(int64, int64, uint64) bool { n++; return true })
	}
	return n
}
