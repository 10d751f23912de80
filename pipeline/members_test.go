package pipeline

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestMembersForgottenAreSavedGoneOnlyIfSaved: the members of a network
// key that came and went between two flushes are not named — the store
// holds nothing of them — while those a flush saved, or restore set, are
// named gone.
func TestMembersForgottenAreSavedGoneOnlyIfSaved(t *testing.T) {
	c := newContributors(3)
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	addr := netip.MustParseAddr("192.0.2.1")
	flush := func() (gone, kept []string) {
		c.flush(func(key string, times []int64, _ []netip.Addr) {
			if times == nil {
				gone = append(gone, key)
			} else {
				kept = append(kept, key)
			}
		})
		slices.Sort(gone)
		slices.Sort(kept)
		return gone, kept
	}
	c.add([]byte("192.0.2.0/24"), addr, t0)
	c.restore("198.51.100.0/24", []int64{t0.UnixNano()}, []netip.Addr{netip.MustParseAddr("198.51.100.7")})
	if _, kept := flush(); !slices.Equal(kept, []string{"192.0.2.0/24"}) {
		t.Fatalf("first flush kept %q", kept)
	}
	c.add([]byte("203.0.113.0/24"), netip.MustParseAddr("203.0.113.5"), t0.Add(time.Second)) // gone before the next flush
	c.expire(t0.Add(time.Minute))
	gone, kept := flush()
	if want := []string{"192.0.2.0/24", "198.51.100.0/24"}; !slices.Equal(gone, want) || len(kept) != 0 {
		t.Errorf("after expiry: gone %q, kept %q; want gone %q", gone, kept, want)
	}
}
