package input

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/state"
)

// TestStatsNameClientsAsText: each client's record is keyed by its address
// as text, IPv4 and IPv6 alike, however many there are, and the next batch
// holds only its own.
func TestStatsNameClientsAsText(t *testing.T) {
	c := NewStatsCounter()
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	want := map[string]bool{}
	for i := range 500 {
		addr := netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)})
		if i%2 == 1 {
			addr = netip.MustParseAddr(fmt.Sprintf("2001:db8:ffff:ffff:ffff:ffff:ffff:%x", i))
		}
		want[addr.String()] = true
		c.Add(&parsers.Event{Time: t0, Kind: parsers.Accepted, ClientIP: addr, NRcpt: 1})
	}
	first := clientKeys(take(c))
	c.Add(&parsers.Event{Time: t0, Kind: parsers.Accepted, ClientIP: netip.MustParseAddr("203.0.113.9"), NRcpt: 1})
	if next := clientKeys(take(c)); len(next) != 1 || next[0] != "203.0.113.9" {
		t.Errorf("next batch's clients: %q", next)
	}
	if len(first) != len(want) {
		t.Fatalf("%d clients' records, want %d", len(first), len(want))
	}
	for _, k := range first {
		if !want[k] {
			t.Errorf("a client's record is keyed %q, no address that sent", k)
		}
		delete(want, k)
	}
}

// take is what the counter hands on, as a store reads it back.
func take(c *StatsCounter) []state.Stat {
	var batch state.Stats
	c.Take(&batch)
	var stats []state.Stat
	batch.Each(func(st *state.Stat) { stats = append(stats, *st) })
	return stats
}

// TestStatsCountEachMinute: events of several minutes, in no order, are
// counted into their own minute, each key once a minute, and handed on in
// minute order; a minute counted again after a Take starts from nothing.
func TestStatsCountEachMinute(t *testing.T) {
	c := NewStatsCounter()
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	ip := netip.MustParseAddr("192.0.2.7")
	for _, minute := range []int{2, 0, 2, 1, 0, 2} {
		c.Add(&parsers.Event{Time: t0.Add(time.Duration(minute) * time.Minute), Kind: parsers.Accepted,
			Sender: "a@example.org", HasSender: true, ClientIP: ip, Size: 100, NRcpt: 2})
	}
	c.Add(&parsers.Event{Time: t0, Kind: parsers.Rejected, Reason: "improper command pipelining after EHLO"})
	c.Add(&parsers.Event{Time: t0.Add(time.Minute), Kind: parsers.LostConnection, Duration: 25 * time.Second})
	got := map[string]state.Stat{}
	last := int64(0)
	for _, st := range take(c) {
		if st.Minute < last {
			t.Errorf("minute %d handed on after %d", st.Minute, last)
		}
		last = st.Minute
		k := fmt.Sprintf("%d %s %s", st.Minute-t0.Unix()/60, st.KeyType, st.Key)
		if _, dup := got[k]; dup {
			t.Errorf("%s handed on twice", k)
		}
		got[k] = st
	}
	for k, want := range map[string]int64{"0 sender a@example.org": 2, "1 sender a@example.org": 1, "2 sender a@example.org": 3,
		"2 client_ip 192.0.2.7": 3, "0 kind accepted": 2, "0 kind rejected": 1, "0 pipelining ": 1, "1 lost 20": 1} {
		if st := got[k]; st.Messages != want {
			t.Errorf("%s: %d messages, want %d", k, st.Messages, want)
		}
	}
	if st := got["2 sender a@example.org"]; st.Bytes != 300 || st.Recipients != 6 {
		t.Errorf("minute 2's sender: %d bytes, %d recipients; want 300, 6", st.Bytes, st.Recipients)
	}
	c.Add(&parsers.Event{Time: t0, Kind: parsers.Accepted, Sender: "b@example.org", HasSender: true})
	if next := take(c); len(next) != 2 || next[0].Key != "accepted" && next[1].Key != "accepted" {
		t.Errorf("the next batch: %+v, want b's minute and its kind", next)
	}
}

func clientKeys(stats []state.Stat) []string {
	var keys []string
	for _, st := range stats {
		if st.KeyType == "client_ip" {
			keys = append(keys, st.Key)
		}
	}
	return keys
}
