// Package statetest is the conformance suite of the state.Store
// contract: every store runs it (the memory store in package state, SQLite
// in package sqlite), so that they agree on every boundary and a new
// store (PostgreSQL) is held to the same.
package statetest

import (
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/state"
)

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// Run runs the suite; open returns a new, empty store each call.
func Run(t *testing.T, open func(t *testing.T) state.Store) {
	t.Run("empty", func(t *testing.T) { empty(t, open(t)) })
	t.Run("windows", func(t *testing.T) { windows(t, open(t)) })
	t.Run("blocks", func(t *testing.T) { blocks(t, open(t)) })
	t.Run("ids", func(t *testing.T) { ids(t, open(t)) })
	t.Run("positions, clock, offenses, files", func(t *testing.T) { positions(t, open(t)) })
	t.Run("stats", func(t *testing.T) { stats(t, open(t)) })
}

func commit(t *testing.T, s state.Store, b *state.Batch) {
	t.Helper()
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
}

func empty(t *testing.T, s state.Store) {
	defer s.Close()
	snap, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Blocks)+len(snap.Offenses)+len(snap.Positions)+len(snap.Files) != 0 || !snap.Clock.IsZero() {
		t.Errorf("an empty store loads %+v", snap)
	}
	if n, err := s.ManualChanges(); err != nil || n != 0 {
		t.Errorf("ManualChanges = %d, %v", n, err)
	}
	if err := s.Commit(&state.Batch{}); err != nil {
		t.Errorf("an empty batch: %v", err)
	}
}

func windows(t *testing.T, s state.Store) {
	defer s.Close()
	ns := t0.UnixNano()
	want := []state.Window{
		{Rule: "r/0", Key: "a@example.org", Times: []int64{ns, ns + 5, ns + 5e9}, Touched: ns + 5e9},
		{Rule: "r/0", Key: "bytes", Times: []int64{ns, ns + 1}, Amounts: []int64{300, 4000}, Offset: -3, Touched: ns + 1},
		{Rule: "b/burst", Key: "x", Times: []int64{ns}, Dates: []int64{ns - 7e9}, Tags: []uint64{1<<40 | 9}},
		{Rule: "n/members", Key: "192.0.2.0/24", Times: []int64{ns, ns + 1},
			Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.7")}},
		{Rule: "r/0", Key: "gone", Times: []int64{ns}},
		{Rule: "r/0", Key: "unicode ünïcödé \x00", Times: []int64{ns}},
	}
	commit(t, s, windowBatch(false, want...))
	commit(t, s, windowBatch(false, state.Window{Rule: "r/0", Key: "gone", Delete: true},
		state.Window{Rule: "r/0", Key: "a@example.org", Times: []int64{ns + 6e9}, Touched: ns + 6e9}))
	want = slices.Delete(want, 4, 5)
	want[0] = state.Window{Rule: "r/0", Key: "a@example.org", Times: []int64{ns + 6e9}, Touched: ns + 6e9}
	got := savedWindows(t, s)
	key := func(w state.Window) string { return w.Rule + "\x00" + w.Key }
	sort.Slice(got, func(i, j int) bool { return key(got[i]) < key(got[j]) })
	sort.Slice(want, func(i, j int) bool { return key(want[i]) < key(want[j]) })
	if len(got) != len(want) {
		t.Fatalf("%d windows, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if key(g) != key(w) || !slices.Equal(g.Times, w.Times) || !slices.Equal(g.Amounts, w.Amounts) || !slices.Equal(g.Dates, w.Dates) ||
			!slices.Equal(g.Tags, w.Tags) || !slices.Equal(g.Addrs, w.Addrs) || g.Offset != w.Offset || g.Touched != w.Touched {
			t.Errorf("window\n%+v\nwant\n%+v", g, w)
		}
	}
	// A full batch holds every window kept: the others are gone.
	commit(t, s, windowBatch(true, state.Window{Rule: "r/0", Key: "bytes", Times: []int64{ns + 9}, Touched: ns + 9}))
	if got := savedWindows(t, s); len(got) != 1 || got[0].Key != "bytes" || !slices.Equal(got[0].Times, []int64{ns + 9}) {
		t.Errorf("after a full batch: %+v, want the one window it held", got)
	}
}

// windowBatch is a batch of windows.
func windowBatch(full bool, ws ...state.Window) *state.Batch {
	b := &state.Batch{Full: full}
	for i := range ws {
		b.Segment.Add(&ws[i])
	}
	return b
}

// savedWindows applies what a store hands back, in order, as the
// pipeline does: a later window replaces an earlier one, a Delete forgets.
func savedWindows(t *testing.T, s state.Store) []state.Window {
	t.Helper()
	byKey := map[[2]string]state.Window{}
	if err := s.Windows(func(w *state.Window) {
		k := [2]string{w.Rule, strings.Clone(w.Key)}
		if w.Delete {
			delete(byKey, k)
			return
		}
		c := *w
		c.Key = k[1]
		c.Times, c.Amounts, c.Dates = slices.Clone(w.Times), slices.Clone(w.Amounts), slices.Clone(w.Dates)
		c.Tags, c.Addrs = slices.Clone(w.Tags), slices.Clone(w.Addrs)
		byKey[k] = c
	}); err != nil {
		t.Fatal(err)
	}
	var out []state.Window
	for _, w := range byKey {
		out = append(out, w)
	}
	return out
}

func blocks(t *testing.T, s state.Store) {
	defer s.Close()
	ev := []state.Evidence{{File: "/var/log/mail.log", Line: 7, Time: t0, Amount: 1}, {File: "/var/log/mail.log", Line: 9, Time: t0.Add(time.Second), Amount: 3}}
	in := []state.Block{
		{ID: 1, Rule: "r", KeyType: "sender", Key: "a@example.org", Since: t0, Until: t0.Add(time.Hour), Value: 31, Limit: 30,
			Window: time.Minute, Actions: map[string]string{"log": state.Applied, "fw": state.Pending}, File: "/var/log/mail.log", Line: 9, Evidence: ev, Host: "mx2.example.org"},
		{ID: 2, Rule: "n", KeyType: "client_net", Key: "192.0.2.0/24", Since: t0, Value: 11, Limit: 10, Window: time.Minute,
			Members: []string{"192.0.2.1"}},
		{ID: 3, Rule: "r", KeyType: "sender", Key: "ended@example.org", Since: t0, Until: t0.Add(time.Hour), Value: 31, Limit: 30, Window: time.Minute},
		{ID: 4, Rule: "r", KeyType: "sender", Key: "boundary@example.org", Since: t0.Add(2 * time.Hour), Until: t0.Add(3 * time.Hour), Value: 31, Limit: 30, Window: time.Minute},
	}
	commit(t, s, &state.Batch{Blocks: in, Members: []state.Member{{ID: 2, Addr: "192.0.2.7"}, {ID: 2, Addr: "192.0.2.1"}}})
	// An outcome recorded after the block was saved, then its end: the
	// end keeps the outcome.
	if err := s.SetActionStatus(1, "fw", state.Failed); err != nil {
		t.Fatal(err)
	}
	commit(t, s, &state.Batch{Ends: []state.End{{ID: 3, Time: t0.Add(30 * time.Minute), Reason: "unban"},
		{ID: 4, Time: t0.Add(2 * time.Hour), Reason: "expired"}, {ID: 1, Time: t0.Add(time.Hour), Reason: "expired"}}})
	commit(t, s, &state.Batch{Blocks: []state.Block{{ID: 5, Rule: "m", KeyType: "client_ip", Key: "198.51.100.1", Since: t0}}, Manual: true})

	snap, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	var active []int64
	for _, b := range snap.Blocks {
		active = append(active, b.ID)
	}
	if !slices.Equal(active, []int64{2, 5}) {
		t.Errorf("Load's blocks in force: %v, want [2 5], by ID", active)
	}
	all, err := s.Blocks(false, time.Time{})
	if err != nil || len(all) != 5 {
		t.Fatalf("all blocks: %d, %v", len(all), err)
	}
	b1 := all[0]
	if b1.Ended != t0.Add(time.Hour) || b1.EndReason != "expired" || !maps.Equal(b1.Actions, map[string]string{"log": state.Applied, "fw": state.Failed}) ||
		b1.File != "/var/log/mail.log" || b1.Line != 9 || b1.Host != "mx2.example.org" || b1.Value != 31 || b1.Limit != 30 || b1.Window != time.Minute ||
		!b1.Until.Equal(t0.Add(time.Hour)) || !b1.Since.Equal(t0) {
		t.Errorf("block 1 came back as %+v", b1)
	}
	if len(b1.Evidence) != 2 || b1.Evidence[1].Line != 9 || b1.Evidence[1].Amount != 3 || !b1.Evidence[1].Time.Equal(t0.Add(time.Second)) {
		t.Errorf("evidence came back as %+v", b1.Evidence)
	}
	if m := slices.Sorted(slices.Values(all[1].Members)); !slices.Equal(m, []string{"192.0.2.1", "192.0.2.7"}) {
		t.Errorf("members %v", m)
	}
	if !all[1].Until.IsZero() {
		t.Errorf("a block with no end came back with until %v", all[1].Until)
	}
	// Blocks since a time: those in force, and those that ended after it —
	// not one that ended at it.
	for _, tt := range []struct {
		since time.Time
		want  []int64
	}{
		{t0, []int64{1, 2, 3, 4, 5}},
		{t0.Add(30 * time.Minute), []int64{1, 2, 4, 5}},
		{t0.Add(time.Hour), []int64{2, 4, 5}},
		{t0.Add(2 * time.Hour), []int64{2, 5}},
	} {
		got, err := s.Blocks(false, tt.since)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, b := range got {
			ids = append(ids, b.ID)
		}
		if !slices.Equal(ids, tt.want) {
			t.Errorf("Blocks(since %v) = %v, want %v", tt.since.Sub(t0), ids, tt.want)
		}
	}
	if n, err := s.ManualChanges(); err != nil || n != 1 {
		t.Errorf("ManualChanges = %d, %v; want 1", n, err)
	}
}

func ids(t *testing.T, s state.Store) {
	defer s.Close()
	first, err := s.ReserveIDs(10)
	if err != nil || first < 1 {
		t.Fatalf("ReserveIDs(10) = %d, %v", first, err)
	}
	second, err := s.ReserveIDs(5)
	if err != nil || second < first+10 {
		t.Errorf("ReserveIDs(5) after 10 from %d = %d, %v: overlaps", first, second, err)
	}
	commit(t, s, &state.Batch{Blocks: []state.Block{{ID: 100, Rule: "r", KeyType: "sender", Key: "k", Since: t0}}})
	if third, err := s.ReserveIDs(1); err != nil || third <= 100 {
		t.Errorf("ReserveIDs after block 100 = %d, %v", third, err)
	}
}

func positions(t *testing.T, s state.Store) {
	defer s.Close()
	p := state.Position{Input: "/var/log/mail.log", Device: 1, Inode: 2, Offset: 300, Line: 3, Fingerprint: []byte{0, 1, 2, 255},
		Counted: []string{"4ABC1", "4ABC2"}}
	commit(t, s, &state.Batch{Positions: []state.Position{p}, Clock: t0, Files: []string{"/var/log/mail.log"},
		Offenses: []state.Offense{{Rule: "r", Key: "k", Count: 2, Last: t0}}})
	commit(t, s, &state.Batch{Files: []string{"/var/log/mail.log.1"}, Offenses: []state.Offense{{Rule: "r", Key: "k", Count: 3, Last: t0.Add(time.Hour)}}})
	snap, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	g := snap.Positions[p.Input]
	if g.Device != 1 || g.Inode != 2 || g.Offset != 300 || g.Line != 3 || !slices.Equal(g.Fingerprint, p.Fingerprint) || !slices.Equal(g.Counted, p.Counted) {
		t.Errorf("position came back as %+v", g)
	}
	if !snap.Clock.Equal(t0) {
		t.Errorf("clock %v", snap.Clock)
	}
	if !slices.Equal(snap.Files, []string{"/var/log/mail.log", "/var/log/mail.log.1"}) {
		t.Errorf("files %q, want in the order added", snap.Files)
	}
	if len(snap.Offenses) != 1 || snap.Offenses[0].Count != 3 || !snap.Offenses[0].Last.Equal(t0.Add(time.Hour)) {
		t.Errorf("offenses %+v", snap.Offenses)
	}
}

func stats(t *testing.T, s state.Store) {
	defer s.Close()
	m := t0.Unix() / 60
	commit(t, s, &state.Batch{Stats: state.StatsOf(state.Stat{Minute: m, KeyType: "sender", Key: "a", Messages: 2, Bytes: 20, Recipients: 3},
		state.Stat{Minute: m + 1, KeyType: "kind", Key: "accepted", Messages: 5})})
	commit(t, s, &state.Batch{Stats: state.StatsOf(state.Stat{Minute: m, KeyType: "sender", Key: "a", Messages: 1, Bytes: 10, Recipients: 1},
		state.Stat{Minute: m + 10, KeyType: "sender", Key: "b", Messages: 1})})
	sum := func(first, last int64) map[string]int64 {
		out := map[string]int64{}
		if err := s.Stats(first, last, func(st *state.Stat) {
			if st.Minute >= first && st.Minute <= last {
				out[st.KeyType+" "+st.Key] += st.Messages
			}
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := sum(m, m+1); !maps.Equal(got, map[string]int64{"sender a": 3, "kind accepted": 5}) {
		t.Errorf("stats of two minutes: %v", got)
	}
	commit(t, s, &state.Batch{PruneStats: time.Unix((m+5)*60, 0)})
	if got := sum(m, m+20); !maps.Equal(got, map[string]int64{"sender b": 1}) {
		t.Errorf("stats after pruning: %v", got)
	}
}
