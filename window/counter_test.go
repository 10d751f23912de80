package window

import (
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func TestCounterAdd(t *testing.T) {
	tests := []struct {
		name  string
		limit int
		per   time.Duration
		times []float64 // seconds after t0, one key
		want  []int     // count after each Add
	}{
		{"under the limit", 3, time.Minute, []float64{0, 10, 20}, []int{1, 2, 3}},
		{"crossing", 3, time.Minute, []float64{0, 10, 20, 30}, []int{1, 2, 3, 4}},
		{"capped at limit+1", 2, time.Minute, []float64{0, 1, 2, 3, 4}, []int{1, 2, 3, 3, 3}},
		// The window is (t-per, t]: an event exactly per ago is outside.
		{"edge is outside", 2, time.Minute, []float64{0, 30, 60}, []int{1, 2, 2}},
		{"just inside", 2, time.Minute, []float64{0, 30, 59.999}, []int{1, 2, 3}},
		// A fixed window at the minute would reset at 60 s and miss this.
		{"across a boundary", 3, time.Minute, []float64{50, 55, 58, 61}, []int{1, 2, 3, 4}},
		{"slides out", 2, time.Minute, []float64{0, 1, 2, 61.5, 62.5}, []int{1, 2, 3, 2, 2}},
		// A clock stepped back counts the event at the newest time.
		{"backwards", 5, time.Minute, []float64{100, 50, 159}, []int{1, 2, 3}},
		{"limit zero", 0, time.Minute, []float64{0, 1}, []int{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(tt.limit, tt.per)
			for i, s := range tt.times {
				if got := c.Add("k", at(s)); got != tt.want[i] {
					t.Errorf("Add #%d at %gs = %d, want %d", i, s, got, tt.want[i])
				}
			}
		})
	}
}

func TestCounterKeysAreIndependent(t *testing.T) {
	c := New(1, time.Minute)
	c.Add("a", at(0))
	if got := c.Add("b", at(1)); got != 1 {
		t.Errorf("b = %d, want 1", got)
	}
	if got := c.Count("a", at(2)); got != 1 {
		t.Errorf("a = %d, want 1", got)
	}
}

func TestCounterMemoryIsBounded(t *testing.T) {
	c := New(10, time.Minute)
	for i := 0; i < 10000; i++ {
		c.Add("k", at(float64(i)/100))
	}
	if n := len(c.keys["k"].times); n != 11 {
		t.Errorf("kept %d times, want limit+1 = 11", n)
	}
	for i := 0; i < 1000; i++ {
		c.Add(fmt.Sprint("key", i), at(200))
	}
	c.Expire(at(259))
	if c.Len() != 1000 {
		t.Errorf("after Expire inside the window: %d keys, want 1000", c.Len())
	}
	c.Expire(at(260))
	if c.Len() != 0 {
		t.Errorf("after Expire past the window: %d keys, want 0", c.Len())
	}
}

func TestCounterFlushAndRestore(t *testing.T) {
	c := New(3, time.Minute)
	for _, s := range []float64{0, 1, 2, 3, 4} {
		c.Add("a", at(s))
	}
	c.Add("b", at(5))
	saved := map[string][]int64{}
	c.Flush(func(key string, times []int64) { saved[key] = append([]int64(nil), times...) })
	if len(saved) != 2 || len(saved["a"]) != 4 || len(saved["b"]) != 1 {
		t.Fatalf("flushed %v", saved)
	}
	c.Flush(func(key string, _ []int64) { t.Errorf("second flush saved %q again", key) })

	d := New(3, time.Minute)
	for k, v := range saved {
		d.Restore(k, v)
	}
	if got, want := d.Add("a", at(10)), c.Add("a", at(10)); got != want {
		t.Errorf("restored counter says %d, original %d", got, want)
	}
	// A lower limit keeps the newest times only.
	e := New(1, time.Minute)
	e.Restore("a", saved["a"])
	if ts := e.Times("a"); len(ts) != 2 || !ts[1].Equal(at(4)) {
		t.Errorf("restore under a lower limit kept %v", ts)
	}

	c.Expire(at(120))
	forgotten := 0
	c.Flush(func(_ string, times []int64) {
		if times == nil {
			forgotten++
		}
	})
	if forgotten != 2 {
		t.Errorf("flush after expiry forgot %d keys, want 2", forgotten)
	}
}

// The window answers whether a key sent more than 10 messages within any
// minute.
func Example() {
	c := New(10, time.Minute)
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 11; i++ {
		n := c.Add("bomber@example.com", start.Add(time.Duration(i)*5*time.Second))
		if n > 10 {
			fmt.Println("over the limit at message", i+1)
		}
	}
	// Output: over the limit at message 11
}

func BenchmarkCounterAdd(b *testing.B) {
	c := New(30, time.Minute)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprint("sender", i, "@example.com")
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Add(keys[i%len(keys)], t0.Add(time.Duration(i)*time.Millisecond))
		if i%100000 == 0 {
			c.Flush(func(string, []int64) {})
		}
	}
}
