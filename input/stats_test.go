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
// as text, IPv4 and IPv6 alike, however many there are (their text shares
// a buffer that grows past its first size), and the keys handed out stay
// what they were when the counter takes the next batch.
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
	first := clientKeys(c.Take(nil))
	c.Add(&parsers.Event{Time: t0, Kind: parsers.Accepted, ClientIP: netip.MustParseAddr("203.0.113.9"), NRcpt: 1})
	if next := clientKeys(c.Take(nil)); len(next) != 1 || next[0] != "203.0.113.9" {
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

func clientKeys(stats []state.Stat) []string {
	var keys []string
	for _, st := range stats {
		if st.KeyType == "client_ip" {
			keys = append(keys, st.Key)
		}
	}
	return keys
}
