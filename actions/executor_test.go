package actions

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// gateAction blocks every run until its gate opens, and notes the order
// of what it ran.
type gateAction struct {
	gate    chan struct{}
	mu      sync.Mutex
	ran     []string
	batches []int
}

func (g *gateAction) Name() string   { return "gate" }
func (g *gateAction) External() bool { return true }
func (g *gateAction) Run(_ context.Context, d Detection) error {
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ran = append(g.ran, d.Event+" "+d.Key)
	return nil
}

// batchingGate is a gateAction that is also a Batcher.
type batchingGate struct{ gateAction }

func (b *batchingGate) RunBatch(ctx context.Context, ds []Detection) []error {
	<-b.gate
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batches = append(b.batches, len(ds))
	for _, d := range ds {
		b.ran = append(b.ran, d.Event+" "+d.Key)
	}
	return make([]error, len(ds))
}

// TestDispatchNeverWaits: with its one slot taken by an action that does
// not return, Dispatch still returns at once for 100 more keys; they all
// run, in order per key, once the slot frees.
func TestDispatchNeverWaits(t *testing.T) {
	a := &gateAction{gate: make(chan struct{})}
	var mu sync.Mutex
	applied := 0
	x := &Executor{Act: true, Concurrency: 1, Log: slog.New(slog.DiscardHandler),
		Record: func(int64, string, string) { mu.Lock(); applied++; mu.Unlock() }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			d := detection(fmt.Sprintf("k%d@x", i))
			x.Dispatch(d, []Action{a})
			d.Event = "unblock"
			x.Dispatch(d, []Action{a})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Dispatch waited for a busy action slot")
	}
	close(a.gate)
	x.Wait()
	if len(a.ran) != 200 || applied != 100 {
		t.Fatalf("%d runs, %d blocks recorded; want 200 and 100", len(a.ran), applied)
	}
	at := map[string]int{}
	for i, r := range a.ran {
		at[r] = i
	}
	for i := range 100 {
		k := fmt.Sprintf("k%d@x", i)
		if at["block "+k] > at["unblock "+k] {
			t.Errorf("%s: unblock ran before its block", k)
		}
	}
}

// TestDispatchDropsBeyondTheQueue: what does not fit in the queue is
// dropped, recorded as failed and counted, not waited for.
func TestDispatchDropsBeyondTheQueue(t *testing.T) {
	a := &gateAction{gate: make(chan struct{})}
	var mu sync.Mutex
	status := map[string]int{}
	dropped := 0
	x := &Executor{Act: true, Concurrency: 1, Queue: 10, Log: slog.New(slog.DiscardHandler),
		Record:  func(_ int64, _, s string) { mu.Lock(); status[s]++; mu.Unlock() },
		Dropped: func(string) { dropped++ }}
	for i := range 15 {
		x.Dispatch(detection(fmt.Sprintf("k%d@x", i)), []Action{a})
	}
	close(a.gate)
	x.Wait()
	if dropped != 5 || status[StatusFailed] != 5 || status[StatusApplied] != 10 {
		t.Errorf("dropped %d, statuses %v; want 5 dropped and failed, 10 applied", dropped, status)
	}
}

// TestBatcherGetsTheBurst: blocks that wait while the action is busy are
// handed to a Batcher together.
func TestBatcherGetsTheBurst(t *testing.T) {
	b := &batchingGate{gateAction{gate: make(chan struct{})}}
	x := &Executor{Act: true, Concurrency: 1, Log: slog.New(slog.DiscardHandler)}
	for i := range 50 {
		x.Dispatch(detection(fmt.Sprintf("k%d@x", i)), []Action{b})
	}
	close(b.gate)
	x.Wait()
	// The worker took what was there when it started (alone or as a
	// batch) and waited at the gate; all that came meanwhile went in one
	// batch after it: two calls at most, whatever the timing.
	singles := 50
	for _, n := range b.batches {
		singles -= n
	}
	if len(b.ran) != 50 || singles+len(b.batches) > 2 {
		t.Errorf("%d runs in %d single runs and batches %v; want 50 runs in two calls at most", len(b.ran), singles, b.batches)
	}
}

// TestRetryEndsWithTheContext: a failing action's retries do not hold a
// shutdown.
func TestRetryEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	a := &countingAction{err: fmt.Errorf("busy")}
	x := &Executor{Act: true, Context: ctx, Log: slog.New(slog.DiscardHandler), Backoff: time.Hour, Retries: 3}
	x.Dispatch(detection("a@x"), []Action{a})
	time.Sleep(50 * time.Millisecond)
	cancel()
	done := make(chan struct{})
	go func() { x.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a retry waited past its context")
	}
	if a.runs != 1 {
		t.Errorf("%d runs, want 1", a.runs)
	}
}

// TestMapRunBatch: several blocks and an unblock in one rewrite and one
// postmap; a hostile key among them is refused alone.
func TestMapRunBatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sender_access")
	runs := filepath.Join(dir, "runs")
	postmap := filepath.Join(dir, "postmap")
	os.WriteFile(postmap, []byte("#!/bin/sh\necho run >> "+runs+"\n"), 0o755)
	m := &Map{ActionName: "pf", Kind: "postfix_map", Path: path, MapType: "hash", Compiler: postmap, Guard: NewGuard(nil)}
	ctx := context.Background()
	if err := m.Run(ctx, Detection{Event: "block", KeyType: "sender", Key: "old@spam.example"}); err != nil {
		t.Fatal(err)
	}
	os.Remove(runs)
	ds := []Detection{
		{Event: "block", KeyType: "sender", Key: "a@spam.example"},
		{Event: "block", KeyType: "sender", Key: "a b@spam.example"},
		{Event: "block", KeyType: "client_ip", Key: "192.0.2.9"},
		{Event: "unblock", KeyType: "sender", Key: "old@spam.example"},
	}
	errs := m.RunBatch(ctx, ds)
	if errs[0] != nil || errs[1] == nil || errs[2] != nil || errs[3] != nil {
		t.Errorf("errors %v; want only the hostile key refused", errs)
	}
	got, _ := os.ReadFile(path)
	if !strings.Contains(string(got), "a@spam.example\t") || !strings.Contains(string(got), "192.0.2.9\t") || strings.Contains(string(got), "old@") {
		t.Errorf("map:\n%s", got)
	}
	if n, _ := os.ReadFile(runs); strings.Count(string(n), "run") != 1 {
		t.Errorf("postmap ran %d times for one batch, want 1", strings.Count(string(n), "run"))
	}
}

// cappedGate is a gateAction that may run once at a time.
type cappedGate struct {
	gateAction
	mu      sync.Mutex
	now, hi int
}

func (c *cappedGate) Cap() int { return 1 }
func (c *cappedGate) Run(ctx context.Context, d Detection) error {
	c.mu.Lock()
	c.now++
	c.hi = max(c.hi, c.now)
	c.mu.Unlock()
	err := c.gateAction.Run(ctx, d)
	c.mu.Lock()
	c.now--
	c.mu.Unlock()
	return err
}

// TestCapAndStop: an action capped at one run at a time never runs twice
// at once; when the context ends, what waits is dropped and Wait returns
// once the run under way ends.
func TestCapAndStop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &cappedGate{gateAction: gateAction{gate: make(chan struct{})}}
	x := &Executor{Act: true, Concurrency: 4, Context: ctx, Log: slog.New(slog.DiscardHandler)}
	for i := range 20 {
		x.Dispatch(detection(fmt.Sprintf("k%d@x", i)), []Action{c})
	}
	for running := 0; running == 0; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		running = c.now
		c.mu.Unlock()
	}
	if x.WaitFor(50 * time.Millisecond) {
		t.Error("WaitFor said done with a run under way")
	}
	cancel()
	close(c.gate)
	x.Wait()
	if c.hi != 1 {
		t.Errorf("%d runs at once, want 1", c.hi)
	}
	if len(c.ran) != 1 {
		t.Errorf("%d runs; want the one under way when the context ended", len(c.ran))
	}
}

// TestMapSASLUser: a sasl_user key goes into a postfix map as
// check_sasl_access reads it; a name a map would misread is refused, and
// so is a map that cannot hold a login.
func TestMapSASLUser(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sasl_access")
	m := &Map{ActionName: "sasl", Kind: "postfix_map", Path: path, MapType: "texthash", Guard: NewGuard(nil)}
	for _, u := range []string{"alice", "bob@example.org"} {
		if err := m.Run(ctx, Detection{Event: "block", KeyType: "sasl_user", Key: u}); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"", "a b", "#x", "x\nnew REJECT", "x\tOK", "a/b", strings.Repeat("x", 256)} {
		if err := m.Run(ctx, Detection{Event: "block", KeyType: "sasl_user", Key: u}); err == nil {
			t.Errorf("hostile user %q was written", u)
		}
	}
	got, _ := os.ReadFile(path)
	want := beginMark + "\nalice\tREJECT blocked by bombwatch for sending too much mail\nbob@example.org\tREJECT blocked by bombwatch for sending too much mail\n" + endMark + "\n"
	if string(got) != want {
		t.Errorf("map:\n%s\nwant:\n%s", got, want)
	}
	for _, other := range []*Map{{Kind: "postfix_map", MapType: "cidr", Path: path, Guard: NewGuard(nil)}, {Kind: "sendmail_access", Path: path, Guard: NewGuard(nil)}} {
		if _, err := other.line("sasl_user", "alice"); err == nil {
			t.Errorf("%s %s took a sasl_user key", other.Kind, other.MapType)
		}
	}
}
