package sqlite

import (
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/state"
	"github.com/bombwatch/bombwatch/state/statetest"
)

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ws := []state.Window{
		{Rule: "r", Key: "a@example.org", Times: []int64{t0.UnixNano(), t0.UnixNano() + 5, t0.UnixNano() + 5e9}, Touched: t0.UnixNano() + 5e9},
		{Rule: "r", Key: "gone", Times: []int64{1}},
		{Rule: "b", Key: "x", Times: []int64{1, 2}, Amounts: []int64{300, 4000}, Dates: []int64{0, 99}, Tags: []uint64{1<<40 | 7, 0},
			Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}, Offset: -3, Touched: 7},
		{Rule: "r", Key: "gone", Delete: true},
	}
	b := &state.Batch{
		Files: []string{"/var/log/mail.log", "/var/log/mail.log.1"},
		Blocks: []state.Block{
			{ID: 1, Rule: "r", KeyType: "sender", Key: "a@example.org", Since: t0, Until: t0.Add(time.Hour), Value: 11, Limit: 10, Window: time.Minute, Actions: map[string]string{"log": state.Applied},
				Evidence: []state.Evidence{{File: "/var/log/mail.log", Line: 7, Time: t0, Amount: 1}, {File: "/var/log/mail.log", Line: 9, Time: t0.Add(time.Second), Amount: 3}}},
			{ID: 2, Rule: "r", KeyType: "sender", Key: "b", Since: t0, Value: 11, Limit: 10, Window: time.Minute},
		},
		Ends:      []state.End{{ID: 2, Time: t0.Add(time.Minute), Reason: "unban"}},
		Positions: []state.Position{{Input: "/var/log/mail.log", Device: 1, Inode: 2, Offset: 300, Line: 3, Fingerprint: []byte{9}}},
		Clock:     t0.Add(time.Second),
	}
	for i := range 3 {
		b.Segment.Add(&ws[i])
	}
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	b2 := &state.Batch{Offenses: []state.Offense{{Rule: "r", Key: "a@example.org", Count: 2, Last: t0}}}
	b2.Segment.Add(&ws[3])
	if err := s.Commit(b2); err != nil {
		t.Fatal(err)
	}
	if err := s.SetActionStatus(1, "hook", state.Failed); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	var windows []state.Window
	err = s.Windows(func(w *state.Window) {
		c := *w
		c.Key = strings.Clone(w.Key)
		c.Times = append([]int64(nil), w.Times...)
		c.Tags, c.Addrs = slices.Clone(w.Tags), slices.Clone(w.Addrs)
		windows = append(windows, c)
	})
	// As committed, in order: the store keeps what each batch saved.
	if err != nil || len(windows) != len(ws) {
		t.Fatalf("windows = %+v, %v", windows, err)
	}
	for i := range ws {
		if !reflect.DeepEqual(windows[i], ws[i]) {
			t.Errorf("window %d = %+v, want %+v", i, windows[i], ws[i])
		}
	}
	if len(snap.Offenses) != 1 || snap.Offenses[0].Count != 2 || !snap.Offenses[0].Last.Equal(t0) {
		t.Errorf("offenses = %+v", snap.Offenses)
	}
	if len(snap.Blocks) != 1 || snap.Blocks[0].ID != 1 || !snap.Blocks[0].Until.Equal(t0.Add(time.Hour)) {
		t.Fatalf("active blocks = %+v", snap.Blocks)
	}
	if got := snap.Blocks[0].Actions; got["log"] != state.Applied || got["hook"] != state.Failed {
		t.Errorf("actions = %v", got)
	}
	if got := snap.Blocks[0].Evidence; !reflect.DeepEqual(got, b.Blocks[0].Evidence) {
		t.Errorf("evidence = %+v", got)
	}
	if !slices.Equal(snap.Files, b.Files) {
		t.Errorf("files = %q", snap.Files)
	}
	// IDs come after the blocks saved, and two reservations never overlap.
	if first, err := s.ReserveIDs(10); err != nil || first != 3 {
		t.Errorf("ReserveIDs(10) = %d, %v; want 3", first, err)
	}
	if first, err := s.ReserveIDs(1); err != nil || first != 13 {
		t.Errorf("ReserveIDs(1) after 10 = %d, %v; want 13", first, err)
	}
	if p := snap.Positions["/var/log/mail.log"]; p.Offset != 300 || p.Inode != 2 || p.Line != 3 {
		t.Errorf("position = %+v", p)
	}
	if !snap.Clock.Equal(t0.Add(time.Second)) {
		t.Errorf("clock = %v", snap.Clock)
	}
	all, err := s.Blocks(false, time.Time{})
	if err != nil || len(all) != 2 || all[1].EndReason != "unban" {
		t.Errorf("all blocks = %+v, %v", all, err)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(path); err == nil {
		t.Error("opened a database with a newer schema")
	}
}

func BenchmarkCommit(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batch := &state.Batch{Clock: t0}
	for i := range 1000 {
		batch.Segment.Add(&state.Window{Rule: "r/0", Key: "sender" + string(rune('a'+i%26)) + time.Duration(i).String(), Times: []int64{1, 2, 3}})
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Commit(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(batch.Segment.Len()), "windows/op")
}

func TestStatsRoundTrip(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stats := []state.Stat{
		{Minute: 100, KeyType: "kind", Key: "accepted", Messages: 3},
		{Minute: 101, KeyType: "sender", Key: "a@example.org", Messages: 2, Bytes: 5000, Recipients: 4},
		{Minute: 160, KeyType: "client_ip", Key: "2001:db8::1", Messages: 1, Bytes: 10, Recipients: 1},
		{Minute: 161, KeyType: "a type of later", Key: "x", Messages: 1},
	}
	if err := s.Commit(&state.Batch{Stats: state.StatsOf(stats...)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(&state.Batch{Stats: state.StatsOf(stats[1:2]...)}); err != nil { // the same key and minute again: summed by readers
		t.Fatal(err)
	}
	var got []state.Stat
	if err := s.Stats(101, 160, func(st *state.Stat) { got = append(got, *st) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != stats[1] || got[1] != stats[2] || got[2] != stats[1] {
		t.Errorf("stats of minutes 101-160: %+v", got)
	}
	if err := s.Commit(&state.Batch{PruneStats: time.Unix(161*60, 0)}); err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	s.Stats(0, 1000, func(st *state.Stat) { got = append(got, *st) })
	// The first batch's row is kept (its newest minute is 161), but only
	// its minute 161 is handed on: the rest was pruned.
	if len(got) != 1 || got[0] != stats[3] {
		t.Errorf("after pruning before 161: %+v", got)
	}
	if err := state.DecodeStats([]byte{0x02, 9}, func(*state.Stat) {}); err == nil {
		t.Error("decoded a corrupt record")
	}
}

// TestConforms: the SQLite store keeps the state.Store contract, opened
// as every command opens it (state.Open).
func TestConforms(t *testing.T) {
	statetest.Run(t, func(t *testing.T) state.Store {
		s, err := state.Open("sqlite:"+filepath.Join(t.TempDir(), "state.db"), state.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestWindowsOfBefore: a state saved with a row per window (before
// segments) is read back, then replaced by the first full batch.
func TestWindowsOfBefore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := state.Window{Rule: "r/0", Key: "a@example.org", Times: []int64{1, 2}, Touched: 2}
	if _, err := s.db.Exec(`INSERT INTO windows (rule, key, data) VALUES (?, ?, ?)`, old.Rule, old.Key, state.AppendWindow(nil, &old)); err != nil {
		t.Fatal(err)
	}
	b := &state.Batch{}
	b.Segment.Add(&state.Window{Rule: "r/0", Key: "b@example.org", Times: []int64{3}, Touched: 3})
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	keys := func() []string {
		var out []string
		if err := s.Windows(func(w *state.Window) { out = append(out, strings.Clone(w.Key)) }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := keys(); !slices.Equal(got, []string{"a@example.org", "b@example.org"}) {
		t.Errorf("windows %v: the row first, then the segment", got)
	}
	full := &state.Batch{Full: true}
	full.Segment.Add(&state.Window{Rule: "r/0", Key: "c@example.org", Times: []int64{4}, Touched: 4})
	if err := s.Commit(full); err != nil {
		t.Fatal(err)
	}
	if got := keys(); !slices.Equal(got, []string{"c@example.org"}) {
		t.Errorf("windows after a full batch %v, want only its own", got)
	}
}

// TestANewStateOpenedTwiceAtOnceOpens: two processes that open a state not
// made yet at the same moment (run, and `bans ban` beside it) both open
// it; the second waits for the first's migration instead of making the
// tables again.
func TestANewStateOpenedTwiceAtOnceOpens(t *testing.T) {
	for range 50 {
		path := filepath.Join(t.TempDir(), "state.db")
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Go(func() {
				s, err := Open(path)
				if err == nil {
					s.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}
