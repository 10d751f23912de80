package postgres

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/internal/pgtest"
	"github.com/bombwatch/bombwatch/state"
	"github.com/bombwatch/bombwatch/state/statetest"
)

// TestConforms runs the state.Store conformance suite against a real
// PostgreSQL server: a throwaway cluster, a new database each test.
func TestConforms(t *testing.T) {
	srv := pgtest.Start(t)
	statetest.Run(t, func(t *testing.T) state.Store {
		s, err := Open(srv.NewDatabase(t), state.OpenOptions{Host: "mx1"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// openHosts opens the database as each of hosts, closed when the test
// ends.
func openHosts(t *testing.T, dsn string, hosts ...string) []*Store {
	t.Helper()
	var out []*Store
	for _, h := range hosts {
		s, err := Open(dsn, state.OpenOptions{Host: h})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		out = append(out, s)
	}
	return out
}

// TestHostsKeepTheirOwnRowsAndShareBlocks: two hosts on one database each
// load their own windows and positions, and a full batch of one drops none
// of the other's; the blocks are one set, with IDs that never collide and
// action outcomes that are each host's own.
func TestHostsKeepTheirOwnRowsAndShareBlocks(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	hosts := openHosts(t, dsn, "mx1", "mx2")
	mx1, mx2 := hosts[0], hosts[1]
	for _, s := range []*Store{mx1, mx2} {
		first, err := s.ReserveIDs(10)
		if err != nil {
			t.Fatal(err)
		}
		b := &state.Batch{Full: true, Positions: []state.Position{{Input: "/var/log/mail.log", Offset: 100}},
			Blocks: []state.Block{{ID: first, Rule: "r", KeyType: "sender", Key: s.host + "@example.org", Actions: map[string]string{"nft": state.Applied}}}}
		b.Segment.Add(&state.Window{Rule: "r/0", Key: s.host, Times: []int64{1}, Touched: 1})
		if err := s.Commit(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*Store{mx1, mx2} {
		var keys []string
		s.Windows(func(w *state.Window) { keys = append(keys, w.Key) })
		snap, err := s.Load()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0] != s.host || len(snap.Positions) != 1 {
			t.Errorf("%s loads windows %v, positions %v", s.host, keys, snap.Positions)
		}
		if len(snap.Blocks) != 2 || snap.Blocks[0].ID == snap.Blocks[1].ID {
			t.Fatalf("%s loads blocks %+v, want both hosts'", s.host, snap.Blocks)
		}
		for _, b := range snap.Blocks {
			own := b.Key == s.host+"@example.org"
			if got := b.Actions["nft"]; own && got != state.Applied || !own && got != state.Pending {
				t.Errorf("%s sees block of %s with nft %s", s.host, b.Key, got)
			}
		}
	}
	if hosts, err := mx1.Hosts(); err != nil || len(hosts) != 1 || hosts[0] != "mx2" {
		t.Errorf("mx1's other hosts: %v, %v", hosts, err)
	}
}

// TestClaimBlockIsOneIDForEveryHost: hosts that decide the same block,
// even at once, or at different events, get one ID; a crossing after the
// block ended is another.
func TestClaimBlockIsOneIDForEveryHost(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	stores := openHosts(t, dsn, "mx1", "mx2", "mx3")
	since := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	ids := make([]int64, len(stores))
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			mine, err := s.ReserveIDs(1)
			if err != nil {
				errs[i] = err
				return
			}
			ids[i], errs[i] = s.ClaimBlock("flood", "sender", "a@example.org", since, mine)
		})
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] || ids[0] < 1 {
			t.Fatalf("claims %v, %v: want one ID", ids, errs)
		}
	}
	// Seen crossed at a later event by a host that saw the events late:
	// the same block, while it is not saved, or in force.
	if again, err := stores[1].ClaimBlock("flood", "sender", "a@example.org", since.Add(time.Second), 101); err != nil || again != ids[0] {
		t.Errorf("the block claimed again a second later: %d (%v), want %d", again, err, ids[0])
	}
	b := state.Block{ID: ids[0], Rule: "flood", KeyType: "sender", Key: "a@example.org", Since: since, Until: since.Add(time.Hour), Window: time.Minute}
	if err := stores[0].Commit(&state.Batch{Blocks: []state.Block{b}}); err != nil {
		t.Fatal(err)
	}
	if again, err := stores[2].ClaimBlock("flood", "sender", "a@example.org", since.Add(-30*time.Second), 105); err != nil || again != ids[0] {
		t.Errorf("claimed at an event before the block's start, within its window: %d (%v), want %d", again, err, ids[0])
	}
	if again, err := stores[2].ClaimBlock("flood", "sender", "a@example.org", since.Add(time.Minute), 102); err != nil || again != ids[0] {
		t.Errorf("claimed while the block is in force: %d (%v), want %d", again, err, ids[0])
	}
	// Once it ended, or after its end, a crossing is another block.
	if later, err := stores[1].ClaimBlock("flood", "sender", "a@example.org", since.Add(2*time.Hour), 103); err != nil || later == ids[0] {
		t.Errorf("a crossing after the block's end got %d (%v), the block's %d", later, err, ids[0])
	}
	if err := stores[0].Commit(&state.Batch{Ends: []state.End{{ID: ids[0], Time: since.Add(time.Minute), Reason: "unban"}}}); err != nil {
		t.Fatal(err)
	}
	if other, err := stores[1].ClaimBlock("flood", "sender", "a@example.org", since.Add(2*time.Minute), 104); err != nil || other == ids[0] {
		t.Errorf("a crossing after an unban got %d (%v), the ended block's %d", other, err, ids[0])
	}
}

// TestEventsArePublishedOnceAndNoticed: a host's batch events are read
// back by another in order, from a number on, and wake it.
func TestEventsArePublishedOnceAndNoticed(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	hosts := openHosts(t, dsn, "mx1", "mx2")
	mx1, mx2 := hosts[0], hosts[1]
	woken := mx2.Notices("mx1")
	blocks := mx2.BlockNotices()
	time.Sleep(200 * time.Millisecond) // listening
	for len(woken) > 0 {
		<-woken
	}
	for len(blocks) > 0 {
		<-blocks
	}
	for _, run := range []string{"one", "two", "three"} {
		if err := mx1.Commit(&state.Batch{Events: []byte(run)}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("no notice of mx1's events")
	}
	var runs []string
	var seqs []int64
	read := func(from int64) {
		runs, seqs = nil, nil
		if err := mx2.Events("mx1", from, func(seq int64, data []byte) error {
			runs, seqs = append(runs, string(data)), append(seqs, seq)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	read(0)
	if !slices.Equal(runs, []string{"one", "two", "three"}) {
		t.Fatalf("runs %v", runs)
	}
	read(seqs[1])
	if !slices.Equal(runs, []string{"two", "three"}) {
		t.Errorf("from the second: %v", runs)
	}
	if err := mx1.Commit(&state.Batch{Blocks: []state.Block{{ID: 1, Rule: "r", KeyType: "sender", Key: "k"}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-blocks:
	case <-time.After(5 * time.Second):
		t.Fatal("no notice of mx1's block")
	}
	if n, err := mx2.BlockChanges(); err != nil || n != 1 {
		t.Errorf("BlockChanges = %d, %v", n, err)
	}
}

// TestHostsStartingAtOnceMakeTheTablesOnce: the daemons of a site start
// together on an empty database; each opens it without error.
func TestHostsStartingAtOnceMakeTheTablesOnce(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			s, err := Open(dsn, state.OpenOptions{Host: fmt.Sprintf("mx%d", i)})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("host %d: %v", i, err)
		}
	}
}

// TestHostsAddingTheSameMembersNeverDeadlock: two hosts add the members
// of the same network blocks at once, in opposite orders, as two hosts
// seeing one botnet do; every commit succeeds.
func TestHostsAddingTheSameMembersNeverDeadlock(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	stores := openHosts(t, dsn, "mx1", "mx2")
	var blocks []state.Block
	for id := int64(1); id <= 10; id++ {
		blocks = append(blocks, state.Block{ID: id, Rule: "botnet", KeyType: "client_net", Key: fmt.Sprintf("192.0.%d.0/24", id)})
	}
	if err := stores[0].Commit(&state.Batch{Blocks: blocks}); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			for round := range 30 {
				var ms []state.Member
				for id := int64(1); id <= 10; id++ {
					ms = append(ms, state.Member{ID: id, Addr: fmt.Sprintf("192.0.%d.%d", id, round)})
				}
				if i == 1 {
					slices.Reverse(ms)
				}
				if err := s.Commit(&state.Batch{Members: ms}); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("mx%d: %v", i+1, err)
		}
	}
}

// TestAHungServerIsOutOfReachWithinTheTimeout: a server that neither
// answers nor refuses (its processes stopped, as on a hung machine or
// behind a network dropping packets) makes every exchange fail after the
// store's timeout — on a connection open before, and on a new one — so
// that the daemon goes on alone rather than waiting with it.
func TestAHungServerIsOutOfReachWithinTheTimeout(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	const timeout = time.Second
	s, err := Open(dsn, state.OpenOptions{Host: "mx1", Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.db.SetMaxIdleConns(1) // one connection open before, one opened after
	if _, err := s.BlockChanges(); err != nil {
		t.Fatal(err)
	}
	srv.Freeze(t)
	var seg state.Segment
	seg.Add(&state.Window{Rule: "flood", Key: "a@example.org", Times: []int64{1}, Amounts: []int64{1}})
	exchanges := []struct {
		name string
		do   func() error
	}{
		{"BlockChanges", func() error { _, err := s.BlockChanges(); return err }},
		{"Commit", func() error { return s.Commit(&state.Batch{Segment: seg, Events: []byte{1, 2, 3}}) }},
		{"ClaimBlock", func() error {
			_, err := s.ClaimBlock("flood", "sender", "a@example.org", time.Unix(100, 0), 1)
			return err
		}},
		{"ReserveIDs", func() error { _, err := s.ReserveIDs(64); return err }},
		{"Events", func() error { return s.Events("mx2", 0, func(int64, []byte) error { return nil }) }},
		{"Hosts", func() error { _, err := s.Hosts(); return err }},
		{"Blocks", func() error { _, err := s.Blocks(true, time.Time{}); return err }},
		{"SetActionStatus", func() error { return s.SetActionStatus(1, "log", state.Applied) }},
	}
	for _, x := range exchanges {
		start := time.Now()
		err := x.do()
		took := time.Since(start)
		if err == nil {
			t.Errorf("%s succeeded against a hung server", x.name)
		}
		if took > 3*timeout {
			t.Errorf("%s took %v against a hung server: its timeout is %v", x.name, took, timeout)
		}
	}
	srv.Thaw(t)
	if _, err := s.BlockChanges(); err != nil {
		t.Errorf("the server answering again: %v", err)
	}
}

// TestNoticesComeBackAfterAPartition: the network between a host and the
// server drops everything for a while, and the connections open then stay
// dead after (as when a router or a NAT forgot them). The connection
// that listens is never told; it is found dead when, silent for
// listenCheck, the server does not answer a ping, and a new one listens.
func TestNoticesComeBackAfterAPartition(t *testing.T) {
	defer func(d time.Duration) { listenCheck = d }(listenCheck)
	listenCheck = 300 * time.Millisecond
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	proxy := srv.Proxy(t)
	mx1 := openHosts(t, dsn, "mx1")[0]
	mx2, err := Open(proxy.DSN(dsn), state.OpenOptions{Host: "mx2", Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer mx2.Close()
	blocks := mx2.BlockNotices()
	select {
	case <-blocks: // listening: woken once at the start
	case <-time.After(5 * time.Second):
		t.Fatal("mx2 not listening")
	}
	proxy.Cut()
	time.Sleep(2 * time.Second)
	proxy.Heal()
	// Connected again (a try a second): the wake that follows is drained,
	// so that only the block's notice can pass.
	time.Sleep(2 * time.Second)
	for len(blocks) > 0 {
		<-blocks
	}
	if err := mx1.Commit(&state.Batch{Blocks: []state.Block{{ID: 1, Rule: "r", KeyType: "sender", Key: "k"}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-blocks:
	case <-time.After(5 * time.Second):
		t.Fatal("no notice of mx1's block after the partition healed")
	}
}

// TestABatchWhoseAnswerWasLostIsSavedOnce: the server ran a commit whose
// answer never came (the connection lost after COMMIT was sent, as when
// a hung server wakes up); the daemon tries the batch again, and nothing
// of it — its events above all — is saved twice.
func TestABatchWhoseAnswerWasLostIsSavedOnce(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	mx1, mx2 := openHosts(t, dsn, "mx1", "mx2")[0], openHosts(t, dsn, "mx2")[0]
	b := &state.Batch{Events: []byte("run"), Positions: []state.Position{{Input: "/var/log/mail.log", Offset: 10}}}
	const token = 42
	if err := mx1.commit(b, token); err != nil {
		t.Fatal(err)
	}
	// What a lost answer leaves: the batch failed, its generation not noted.
	mx1.failedBatch, mx1.failedToken = b, token
	mx1.gen.Add(-1)
	if err := mx1.Commit(b); err != nil {
		t.Fatal(err)
	}
	if err := mx1.Commit(&state.Batch{Events: []byte("next")}); err != nil {
		t.Fatal(err)
	}
	var runs []string
	if err := mx2.Events("mx1", 0, func(_ int64, data []byte) error {
		runs = append(runs, string(data))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(runs, []string{"run", "next"}) {
		t.Errorf("runs published %q, want [run next]", runs)
	}
	if gen := mx1.Generation(); gen != 2 {
		t.Errorf("generation %d after two batches", gen)
	}
}

// TestAReportOfAllHostsAddsThemUp: opened for all hosts, Stats hands on
// every host's counts, a key's minutes in order whichever host saw them,
// each host's pruned minutes left out; the clock is the newest host's.
func TestAReportOfAllHostsAddsThemUp(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	hosts := openHosts(t, dsn, "mx1", "mx2")
	mx1, mx2 := hosts[0], hosts[1]
	const m = 29_000_000
	stat := func(minute int64, n int64) state.Stat {
		return state.Stat{Minute: minute, KeyType: "sender", Key: "a@example.org", Messages: n}
	}
	for _, c := range []struct {
		s *Store
		b state.Batch
	}{
		{mx1, state.Batch{Stats: state.StatsOf(stat(m, 1), stat(m+2, 1)), Clock: time.Unix((m+2)*60, 0)}},
		{mx2, state.Batch{Stats: state.StatsOf(stat(m+1, 10), stat(m+3, 10)), Clock: time.Unix((m+3)*60, 0)}},
		{mx1, state.Batch{Stats: state.StatsOf(stat(m+4, 1))}},
		{mx2, state.Batch{Stats: state.StatsOf(stat(m-5, 100)), PruneStats: time.Unix((m-1)*60, 0)}},
	} {
		if err := c.s.Commit(&c.b); err != nil {
			t.Fatal(err)
		}
	}
	read := func(all bool) (minutes []int64, total int64, clock time.Time) {
		s, err := Open(dsn, state.OpenOptions{Host: "mx1", ReadOnly: true, AllHosts: all})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Stats(m-10, m+10, func(st *state.Stat) {
			minutes = append(minutes, st.Minute)
			total += st.Messages
		}); err != nil {
			t.Fatal(err)
		}
		snap, err := s.Load()
		if err != nil {
			t.Fatal(err)
		}
		return minutes, total, snap.Clock
	}
	minutes, total, clock := read(true)
	if !slices.Equal(minutes, []int64{m, m + 1, m + 2, m + 3, m + 4}) || total != 23 {
		t.Errorf("all hosts: minutes %v, %d messages; want minutes m..m+4 in order, 23 (mx2's pruned 100 left out)", minutes, total)
	}
	if want := time.Unix((m+3)*60, 0).UTC(); !clock.Equal(want) {
		t.Errorf("all hosts: clock %v, want mx2's %v", clock, want)
	}
	minutes, total, clock = read(false)
	if !slices.Equal(minutes, []int64{m, m + 2, m + 4}) || total != 3 {
		t.Errorf("mx1 alone: minutes %v, %d messages", minutes, total)
	}
	if want := time.Unix((m+2)*60, 0).UTC(); !clock.Equal(want) {
		t.Errorf("mx1 alone: clock %v, want %v", clock, want)
	}
}
