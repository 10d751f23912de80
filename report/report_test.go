package report

import (
	"testing"
	"time"
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
	c := centiles([]int64{5, 1, 3, 2, 4, 100})
	if c.P50 != 4 || c.Max != 100 || c.P99 != 100 {
		t.Errorf("%+v", c)
	}
	if c := centiles(nil); c != (Centile{}) {
		t.Errorf("of nothing: %+v", c)
	}
	d := derived("sender", "a@example.org", 24, 48)
	if len(d) != 2 || d[1].typ != "sender_domain" || d[1].key != "example.org" {
		t.Errorf("%+v", d)
	}
	d = derived("client_ip", "2001:db8:1:2::3", 24, 48)
	if len(d) != 2 || d[1].key != "2001:db8:1::/48" {
		t.Errorf("%+v", d)
	}
	// The rules' prefix, not a fixed one.
	d = derived("client_ip", "192.0.2.77", 26, 64)
	if len(d) != 2 || d[1].key != "192.0.2.64/26" {
		t.Errorf("with /26: %+v", d)
	}
	if share(1, 3) != 0.3333 || share(1, 0) != 0 {
		t.Error("share")
	}
}
