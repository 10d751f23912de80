package pipeline_test

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/parsers"
	. "github.com/bombwatch/bombwatch/pipeline"
	"github.com/bombwatch/bombwatch/state"
)

// restartRig runs events through a pipeline on a store, restarts it on
// that store, and keeps the detections of both.
type restartRig struct {
	t     *testing.T
	cfg   *config.Config
	opts  Options
	store state.Store
	got   []Detection
}

func newRestartRig(t *testing.T, cfgYAML string, maxKeys int) *restartRig {
	cfg, err := config.Parse("test.yaml", []byte(cfgYAML))
	if err != nil {
		t.Fatal(err)
	}
	r := &restartRig{t: t, cfg: cfg, store: state.NewMemory()}
	r.opts = Options{Logger: slog.New(slog.DiscardHandler), MaxKeys: maxKeys, OnDetection: func(d Detection) { r.got = append(r.got, d) }}
	return r
}

// open starts a pipeline on the rig's store, or on none.
func (r *restartRig) open(withStore bool) *Pipeline {
	r.t.Helper()
	o := r.opts
	if withStore {
		o.Store = r.store
	}
	p, err := config.NewPipeline(r.cfg, o)
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

func (r *restartRig) commit(p *Pipeline) {
	r.t.Helper()
	if err := p.CommitNow(nil, true); err != nil {
		r.t.Fatal(err)
	}
}

// save runs events through a pipeline on the rig's store and stops it,
// its state saved: what a restart then starts from.
func (r *restartRig) save(events func(*Pipeline)) {
	r.t.Helper()
	p := r.open(true)
	events(p)
	r.commit(p)
	p.Close()
}

var restartT0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func accepted(at time.Duration, sender string) *parsers.Event {
	return &parsers.Event{Time: restartT0.Add(at), Kind: parsers.Accepted, Sender: sender, HasSender: true,
		ClientIP: netip.MustParseAddr("198.51.100.7"), NRcpt: 1}
}

// TestAKeyIsRestoredBeforeItsFirstEventAfterARestart: a restart reads the
// saved windows but restores only the part an event needs; the key that
// event counts has its saved count, so it is blocked where a pipeline
// that never stopped blocks it, and the other keys come back whole.
func TestAKeyIsRestoredBeforeItsFirstEventAfterARestart(t *testing.T) {
	const senders = 2000
	rig := newRestartRig(t, "rules:\n  - {name: s, on: [accepted], key: sender, limit: 3, per: 1h}\n", 0)
	before := func(p *Pipeline) {
		for i := range senders {
			p.Event(accepted(time.Duration(i)*time.Millisecond, fmt.Sprintf("s%d@example.net", i)))
		}
		for i := range 3 { // at the limit, not over it
			p.Event(accepted(10*time.Second+time.Duration(i)*time.Second, "near@example.org"))
		}
	}
	crossing := accepted(time.Minute, "near@example.org")

	never := rig.open(false)
	before(never)
	never.Event(crossing)
	want := rig.got
	if len(want) != 1 || want[0].Key != "near@example.org" || want[0].Value != 4 {
		t.Fatalf("a pipeline that never stopped detected %+v", want)
	}

	rig.got = nil
	rig.save(before)
	if len(rig.got) != 0 {
		t.Fatalf("detections before the restart: %+v", rig.got)
	}

	p := rig.open(true)
	if p.Unrestored() < senders || p.Keys() != 0 {
		t.Fatalf("after the restart: %d windows to restore, %d keys held; want every window still to restore", p.Unrestored(), p.Keys())
	}
	p.Event(crossing)
	if len(rig.got) != 1 || rig.got[0].Key != want[0].Key || rig.got[0].Value != want[0].Value || !rig.got[0].Time.Equal(want[0].Time) {
		t.Fatalf("after the restart detected %+v, want %+v", rig.got, want)
	}
	if held, left := p.Keys(), p.Unrestored(); held > senders/8 || left < senders/2 || held+left != senders+1 {
		t.Errorf("one event restored %d keys and left %d windows: want one part of %d", held, left, senders+1)
	}
	p.RestoreAll()
	if p.Keys() != senders+1 || p.Unrestored() != 0 {
		t.Errorf("restored in all %d keys, %d windows left; want %d, 0", p.Keys(), p.Unrestored(), senders+1)
	}
}

// TestEvictionAfterARestartSeesEveryKey: past max_keys the least recently
// seen are forgotten, those not yet restored among them: a restarted
// pipeline keeps the keys one that never stopped keeps.
func TestEvictionAfterARestartSeesEveryKey(t *testing.T) {
	const old, fresh, maxKeys = 999, 2, 1000
	rig := newRestartRig(t, "rules:\n  - {name: s, on: [accepted], key: sender, limit: 5, per: 1h}\n", maxKeys)
	before := func(p *Pipeline) {
		for i := range old {
			p.Event(accepted(time.Duration(i)*time.Second, fmt.Sprintf("old%d@example.net", i)))
		}
	}
	after := func(p *Pipeline) {
		for i := range fresh {
			p.Event(accepted(time.Hour/2+time.Duration(i)*time.Millisecond, fmt.Sprintf("new%d@example.net", i)))
		}
	}
	never := rig.open(true)
	before(never)
	after(never)
	rig.commit(never)
	wantKeys, wantEvicted := never.Keys(), never.Stats.Evicted
	never.Close()
	if wantEvicted == 0 || wantKeys > maxKeys {
		t.Fatalf("a pipeline that never stopped holds %d keys, evicted %d: the test evicts nothing", wantKeys, wantEvicted)
	}

	rig.store = state.NewMemory()
	rig.save(before)
	p := rig.open(true)
	after(p)
	if p.Unrestored() == 0 {
		t.Fatal("every key was restored before the commit: the test shows nothing")
	}
	rig.commit(p)
	if p.Unrestored() != 0 || p.Keys() != wantKeys || p.Stats.Evicted != wantEvicted {
		t.Errorf("after the restart: %d keys held, %d evicted, %d windows unrestored; want %d, %d, 0",
			p.Keys(), p.Stats.Evicted, p.Unrestored(), wantKeys, wantEvicted)
	}
}

// TestAFullBatchAfterARestartKeepsTheKeysNotYetRestored: a batch that
// saves every key, and drops what the store held, comes with every key
// restored first: those no event needed yet are kept.
func TestAFullBatchAfterARestartKeepsTheKeysNotYetRestored(t *testing.T) {
	defer SetMinFull(10)()
	const senders = 1000
	rig := newRestartRig(t, "rules:\n  - {name: s, on: [accepted], key: sender, limit: 5000, per: 24h}\n", 0)
	rig.save(func(p *Pipeline) {
		for i := range senders {
			p.Event(accepted(time.Duration(i)*time.Millisecond, fmt.Sprintf("s%d@example.net", i)))
		}
	})

	// One key, saved again and again: the store holds more rewritten
	// windows than keys, and a batch saves every key.
	p := rig.open(true)
	for i := range 3 * senders / 2 {
		p.Event(accepted(time.Minute+time.Duration(i)*time.Second, "s0@example.net"))
		rig.commit(p)
	}
	full := p.Unrestored() == 0 // nothing else restores them all here
	p.Close()

	p = rig.open(true)
	p.RestoreAll()
	if !full {
		t.Error("no batch saved every key: the test shows nothing")
	}
	if p.Keys() != senders {
		t.Errorf("%d keys saved, want %d", p.Keys(), senders)
	}
}

// TestAForgivenKeyWhoseBlockExpiredWhileStoppedIsForgotten: a block of a
// forgiving rule that ends by time forgets its key's count (as
// smtp-dos-detector's entry expires), also when it ends as the daemon
// starts, by the wall clock, before the windows are read: the key comes
// back from zero, as in a pipeline that never stopped.
func TestAForgivenKeyWhoseBlockExpiredWhileStoppedIsForgotten(t *testing.T) {
	rig := newRestartRig(t, "rules:\n  - {name: dos, on: [accepted], key: sender, limit: 5, per: 1h, block: 30s, forgive: 10}\n", 0)
	first := func(p *Pipeline) {
		for i := range 6 { // the 6th starts a block, and the count at -10
			p.Event(accepted(time.Duration(i)*500*time.Millisecond, "dos@example.org"))
		}
	}
	second := func(p *Pipeline) {
		for i := range 6 {
			p.Event(accepted(time.Minute+time.Duration(i)*100*time.Millisecond, "dos@example.org"))
		}
	}
	never := rig.open(false)
	first(never)
	second(never)
	want := summary(rig.got)
	if len(want) != 3 {
		t.Fatalf("a pipeline that never stopped: %v; want a block, its end and a block", want)
	}

	rig.got = nil
	rig.save(first)
	// As the daemon starts: the blocks first, lifted by the wall clock
	// when over, then the windows.
	o := rig.opts
	o.Store, o.DeferWindows = rig.store, true
	p, err := config.NewPipeline(rig.cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	p.Advance(restartT0.Add(40 * time.Second))
	if err := p.RestoreWindows(); err != nil {
		t.Fatal(err)
	}
	second(p)
	if got := summary(rig.got); !slices.Equal(got, want) {
		t.Errorf("after a restart: %v, want %v", got, want)
	}
}

// TestMaxKeysHoldsBetweenSaves: a flood read faster than it is saved (a
// daemon catching up saves every 200 ms, whatever it read meanwhile) still
// holds no more than a sixteenth past the cap, and what one look every
// 1,024 events lets in.
func TestMaxKeysHoldsBetweenSaves(t *testing.T) {
	const senders, maxKeys = 100_000, 10_000
	rig := newRestartRig(t, "rules:\n  - {name: s, on: [accepted], key: sender, limit: 5, per: 1h}\n", maxKeys)
	rig.opts.CommitEvery = 1 << 30 // no batch is saved
	p := rig.open(false)
	peak := 0
	for i := range senders {
		p.Event(accepted(time.Duration(i)*time.Millisecond, fmt.Sprintf("s%d@example.net", i)))
		peak = max(peak, p.Keys())
	}
	if peak > maxKeys+maxKeys/16+1024 {
		t.Errorf("%d keys held at most, cap %d", peak, maxKeys)
	}
	if p.Stats.Evicted < senders-maxKeys-maxKeys/16-1024 {
		t.Errorf("%d keys evicted of %d", p.Stats.Evicted, senders)
	}
}

// windowsCounted is a store that counts the windows batches save, and the
// deletes among them.
type windowsCounted struct {
	state.Store
	windows, deletes int
}

func (s *windowsCounted) Commit(b *state.Batch) error {
	for _, chunk := range b.Segment.Chunks() {
		if err := state.DecodeChunk(chunk, func(w *state.Window) {
			s.windows++
			if w.Delete {
				s.deletes++
			}
		}); err != nil {
			return err
		}
	}
	return s.Store.Commit(b)
}

// TestKeysThatCameAndWentBetweenSavesAreNotSaved: a flood of one-message
// senders, each forgotten before the next save, costs the store nothing
// but the keys still held when it saves — not a window written gone for
// each — and a restart from it decides as a pipeline that never stopped.
func TestKeysThatCameAndWentBetweenSavesAreNotSaved(t *testing.T) {
	const rounds, senders = 20, 500
	r := newRestartRig(t, "rules:\n  - {name: senders, on: [accepted], key: sender, limit: 1, per: 1m, block: 10m}\n", 0)
	counted := &windowsCounted{Store: r.store}
	r.store = counted
	sender := func(round, i int) string { return fmt.Sprintf("r%d-s%d@example.org", round, i) }
	flood := func(p *Pipeline) {
		for round := range rounds {
			for i := range senders {
				p.Event(accepted(time.Duration(round)*2*time.Minute+time.Duration(i)*time.Millisecond, sender(round, i)))
			}
		}
	}
	r.save(flood)
	if counted.windows != senders || counted.deletes != 0 {
		t.Errorf("saved %d windows, %d of them gone; want the last round's %d, none gone", counted.windows, counted.deletes, senders)
	}

	end := time.Duration(rounds-1)*2*time.Minute + 10*time.Second
	again := func(p *Pipeline) {
		p.Event(accepted(end, sender(rounds-1, 7))) // its second in a minute: blocked
		p.Event(accepted(end, sender(0, 7)))        // its first in 38 minutes
	}
	p := r.open(true)
	again(p)
	p.Close()
	restarted := r.got
	r.got = nil
	whole := r.open(false)
	flood(whole)
	again(whole)
	whole.Close()
	var last []Detection
	for _, d := range r.got {
		if !d.Time.Before(restartT0.Add(end)) {
			last = append(last, d)
		}
	}
	if len(restarted) != 1 || restarted[0].Key != sender(rounds-1, 7) || len(last) != 1 || last[0].Key != restarted[0].Key {
		t.Errorf("after the restart: %+v; never stopped: %+v; want the last round's sender blocked in both", restarted, last)
	}
}
