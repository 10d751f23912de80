package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/internal/pgtest"
	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/pipeline"
	"github.com/bombwatch/bombwatch/state"
)

// mxHost is one daemon of several sharing a PostgreSQL state: its log,
// the file its script action writes what it enforces to, its detections.
type mxHost struct {
	name, log, enforced string
	mu                  sync.Mutex
	detections          []pipeline.Detection
	metrics             *Metrics
	sent                int
	stop                func() error
	// start starts the host's daemon again, after stop.
	start func(t *testing.T)
}

// startHosts starts one daemon per name on one database, each following
// its own log, with a rule of limit 5 a minute per sender and a script
// action that notes each block and unblock.
func startHosts(t *testing.T, dsn string, names ...string) []*mxHost {
	t.Helper()
	return startHostsPer(t, dsn, "1m", names...)
}

// startHostsPer is startHosts with the rule's window per.
func startHostsPer(t *testing.T, dsn, per string, names ...string) []*mxHost {
	t.Helper()
	return startHostsWith(t, dsn, per, 0, names...)
}

// startHostsWith is startHostsPer with the store's timeout (0: its
// default).
func startHostsWith(t *testing.T, dsn, per string, timeout time.Duration, names ...string) []*mxHost {
	t.Helper()
	dir := t.TempDir()
	var hosts []*mxHost
	for _, name := range names {
		h := &mxHost{name: name, log: filepath.Join(dir, name+".log"), enforced: filepath.Join(dir, name+".enforced"), metrics: NewMetrics()}
		os.WriteFile(h.log, nil, 0o644)
		cfg, err := config.Parse(name+".yaml", []byte(fmt.Sprintf(`
state: %q
host: %s
journal: %s
merge_delay: 200ms
inputs:
  - {path: %s, poll: 20ms}
actions:
  note:
    type: script
    command: [/bin/sh, -c, 'echo "block $1" >> %s', sh, "{key}"]
    unblock_command: [/bin/sh, -c, 'echo "unblock $1" >> %s', sh, "{key}"]
rules:
  - {name: flood, on: [accepted], key: sender, limit: 5, per: %s, block: 1h, actions: [log, note]}
`, dsn, name, filepath.Join(dir, name+".journal.db"), h.log, h.enforced, h.enforced, per)))
		if err != nil {
			t.Fatal(err)
		}
		h.start = func(t *testing.T) {
			t.Helper()
			ctx, cancel := context.WithCancel(context.Background())
			ready, done := make(chan struct{}), make(chan error, 1)
			go func() {
				done <- Run(ctx, Options{Load: func() (*config.Config, error) { return cfg, nil }, Metrics: h.metrics,
					Logger: testLogger(name), Now: time.Now, Ready: ready,
					OpenStore: func(dsn string) (state.Store, error) {
						return state.Open(dsn, state.OpenOptions{Host: name, Timeout: timeout})
					},
					OnDetection: func(d pipeline.Detection) {
						h.mu.Lock()
						h.detections = append(h.detections, d)
						h.mu.Unlock()
					}})
			}()
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("%s: Run: %v", name, err)
			}
			h.stop = func() error {
				cancel()
				err := <-done
				h.stop = func() error { return nil }
				return err
			}
		}
		h.start(t)
		hosts = append(hosts, h)
	}
	t.Cleanup(func() {
		for _, h := range hosts {
			h.stop()
		}
	})
	return hosts
}

// send appends n messages of sender to the host's log, stamped now.
func (h *mxHost) send(t *testing.T, sender string, n int) {
	t.Helper()
	f, err := os.OpenFile(h.log, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for range n {
		h.sent++ // a queue ID is a message: the parser counts each once
		fmt.Fprintf(f, "%s %s postfix/qmgr[1]: %s%05d: from=<%s>, size=100, nrcpt=1 (queue active)\n",
			time.Now().UTC().Format(time.RFC3339Nano), h.name, strings.ToUpper(h.name), h.sent, sender)
	}
}

// waitRan waits until the host's script ran line ("block:KEY",
// "unblock:KEY"); why says what is waited for.
func (h *mxHost) waitRan(t *testing.T, line, why string) {
	t.Helper()
	waitUntil(t, why, func() bool { return slices.Contains(h.enforcedLines(), line) })
}

func (h *mxHost) enforcedLines() []string {
	data, _ := os.ReadFile(h.enforced)
	return strings.Fields(strings.ReplaceAll(string(data), "block ", "block:"))
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestHostsShareCountsAndBlocks: three daemons on three hosts' logs,
// appended live, one PostgreSQL state. A sender that stays under the limit
// on every host but is over it across them is blocked, once, and the block
// is enforced on every host; a sender under it across the hosts is not;
// every host lists the same blocks; an unban on one host is lifted on all.
func TestHostsShareCountsAndBlocks(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	hosts := startHosts(t, dsn, "mx1", "mx2", "mx3")
	time.Sleep(300 * time.Millisecond) // each host sees the others registered at its next look
	for _, h := range hosts {
		h.send(t, "spread@example.org", 2) // 6 across the hosts: over 5
		h.send(t, "under@example.org", 1)  // 3: under
	}
	for _, h := range hosts {
		h.waitRan(t, "block:spread@example.org", h.name+" enforcing the block of spread@")
	}
	time.Sleep(500 * time.Millisecond) // time for a wrong block of under@ to show
	var ids []int64
	for _, h := range hosts {
		if got := h.enforcedLines(); !slices.Equal(got, []string{"block:spread@example.org"}) {
			t.Errorf("%s enforced %v, want the block of spread@ once", h.name, got)
		}
		s, err := state.Open(dsn, state.OpenOptions{Host: h.name, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		blocks, err := s.Blocks(true, time.Time{})
		s.Close()
		if err != nil || len(blocks) != 1 || blocks[0].Key != "spread@example.org" {
			t.Fatalf("%s lists %+v, %v", h.name, blocks, err)
		}
		ids = append(ids, blocks[0].ID)
		if blocks[0].Actions["note"] != state.Applied {
			t.Errorf("%s: the note action is %q here", h.name, blocks[0].Actions["note"])
		}
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("the hosts list block IDs %v", ids)
	}

	// Unbanned on mx2 as `bans unban` does it: the command lifts mx2's
	// actions and saves the end; mx1 and mx3 lift theirs.
	s, err := state.Open(dsn, state.OpenOptions{Host: "mx2"})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Commit(&state.Batch{Manual: true, Ends: []state.End{{ID: ids[0], Time: time.Now().UTC(), Reason: "unban"}}})
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*mxHost{hosts[0], hosts[2]} {
		h.waitRan(t, "unblock:spread@example.org", h.name+" lifting the block")
	}
	time.Sleep(300 * time.Millisecond)
	if got := hosts[1].enforcedLines(); len(got) != 1 {
		t.Errorf("mx2, where the command lifted it, acted again: %v", got)
	}
	for _, h := range hosts {
		h.mu.Lock()
		var events []string
		for _, d := range h.detections {
			events = append(events, d.Event+" "+d.Key)
		}
		h.mu.Unlock()
		want := []string{"block spread@example.org", "unblock spread@example.org"}
		if h.name == "mx2" {
			want = want[:1]
		}
		if !slices.Equal(events, want) {
			t.Errorf("%s detected %v, want %v", h.name, events, want)
		}
	}
}

// published reads every host's published events from the state and
// returns, per host, how many times each line (file:line) was published.
func published(t *testing.T, dsn string, hosts ...string) map[string]map[string]int {
	t.Helper()
	s, err := state.Open(dsn, state.OpenOptions{Host: "reader", ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := map[string]map[string]int{}
	for _, h := range hosts {
		out[h] = map[string]int{}
		var d parsers.Decoder
		err := s.(state.Shared).Events(h, 0, func(_ int64, data []byte) error {
			return d.DecodeEach(data, func(e *parsers.Event) { out[h][fmt.Sprintf("%s:%d", filepath.Base(e.File), e.Line)]++ })
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestHostsGoOnAloneWhileTheDatabaseIsDown: the database stopped for a
// minute. Each host goes on alone — a sender over the limit on one host
// is blocked there at once — and says so (the metric, /healthz's error);
// once the database is back, what each saw is sent: a sender split over
// the two hosts during the outage is blocked on both, the block made alone
// reaches the other host, and every line is published exactly once.
//
// OUTAGE=3s shortens the outage while working on it.
// The database is lost in two ways: stopped (connections refused) and
// hung (its processes stopped: connections neither answered nor refused,
// as when a network drops packets). Either way each host goes on alone at
// once, keeps reading at full speed, and sends what it saw once the
// database is back.
func TestHostsGoOnAloneWhileTheDatabaseIsDown(t *testing.T) {
	outage := time.Minute
	if os.Getenv("OUTAGE") != "" {
		outage, _ = time.ParseDuration(os.Getenv("OUTAGE"))
	}
	t.Run("stopped", func(t *testing.T) {
		srv := pgtest.Start(t)
		testHostsAlone(t, srv, 0, srv.Stop, srv.Restart, outage)
	})
	t.Run("hung", func(t *testing.T) {
		srv := pgtest.Start(t)
		testHostsAlone(t, srv, hungTimeout, srv.Freeze, srv.Thaw, min(outage, 20*time.Second))
	})
}

// hungTimeout is the store's timeout in the test of a hung database.
const hungTimeout = 3 * time.Second

func testHostsAlone(t *testing.T, srv *pgtest.Server, timeout time.Duration, lose, regain func(testing.TB), outage time.Duration) {
	dsn := srv.NewDatabase(t)
	hosts := startHostsWith(t, dsn, "10m", timeout, "mx1", "mx2")
	mx1, mx2 := hosts[0], hosts[1]
	time.Sleep(300 * time.Millisecond)
	mx1.send(t, "before@example.org", 1)
	mx2.send(t, "before@example.org", 1)
	waitUntil(t, "the first lines published", func() bool {
		p := published(t, dsn, "mx1", "mx2")
		return len(p["mx1"]) == 1 && len(p["mx2"]) == 1
	})

	lose(t)
	mx1.send(t, "alone@example.org", 6) // over on mx1 alone
	mx1.send(t, "split@example.org", 3) // over only together
	mx2.send(t, "split@example.org", 3)
	mx1.waitRan(t, "block:alone@example.org", "mx1 blocking alone@ while the database is down")
	for _, h := range hosts {
		waitUntil(t, h.name+" saying it is alone", func() bool {
			h.metrics.mu.Lock()
			defer h.metrics.mu.Unlock()
			return h.metrics.health != nil && strings.Contains(h.metrics.health.Error(), "alone")
		})
		if v := testutil.ToFloat64(h.metrics.alone); v != 1 {
			t.Errorf("%s: bombwatch_state_alone = %v while the database is down", h.name, v)
		}
	}
	// Alone, a host reads at full speed: its tries to save, each waiting
	// for the timeout of a hung server, run beside the reading.
	sent := time.Now()
	mx1.send(t, "later@example.org", 6)
	mx1.waitRan(t, "block:later@example.org", "mx1 blocking later@ while the database is down")
	took := time.Since(sent)
	t.Logf("later@ blocked by mx1, alone, %v after it was sent", took)
	if timeout > 0 && took > timeout*3/4 {
		t.Errorf("mx1 took %v to block later@ while alone: reading waited for the database (timeout %v)", took, timeout)
	}
	// Restarted while the database is down, mx1 starts on its journal,
	// where the blocks it decided alone were copied: they are enforced,
	// not decided and run again.
	time.Sleep(1500 * time.Millisecond) // copied at a tick
	stopping := time.Now()
	if err := mx1.stop(); err != nil {
		t.Errorf("mx1 stopping alone: %v", err)
	}
	if took := time.Since(stopping); took > time.Second {
		t.Errorf("mx1 took %v to stop alone: it waited for the database", took)
	}
	mx1.start(t)
	time.Sleep(outage)
	if slices.Contains(mx1.enforcedLines(), "block:split@example.org") || slices.Contains(mx2.enforcedLines(), "block:split@example.org") {
		t.Fatal("split@ blocked while no host could see the other's 3")
	}
	regain(t)

	for _, h := range hosts {
		h.waitRan(t, "block:split@example.org", h.name+" blocking split@ once the hosts see each other again")
	}
	for _, sender := range []string{"alone", "later"} {
		mx2.waitRan(t, "block:"+sender+"@example.org", "mx2 enforcing the block of "+sender+"@ mx1 made alone")
	}
	for _, h := range hosts {
		waitUntil(t, h.name+" healthy again", func() bool {
			h.metrics.mu.Lock()
			defer h.metrics.mu.Unlock()
			return h.metrics.health == nil
		})
		if v := testutil.ToFloat64(h.metrics.alone); v != 0 {
			t.Errorf("%s: bombwatch_state_alone = %v once the database is back", h.name, v)
		}
	}
	ranOnce(t, hosts)
	publishedOnce(t, dsn, map[string]int{"mx1": 16, "mx2": 4})
}

// ranOnce checks that each host's script ran each block and unblock once.
func ranOnce(t *testing.T, hosts []*mxHost) {
	t.Helper()
	for _, h := range hosts {
		seen := map[string]int{}
		for _, l := range h.enforcedLines() {
			seen[l]++
		}
		for l, n := range seen {
			if n != 1 {
				t.Errorf("%s ran %q %d times: %v", h.name, l, n, h.enforcedLines())
			}
		}
	}
}

// publishedOnce waits for each host's lines to be published, and checks
// that each was once and that there are want of them.
func publishedOnce(t *testing.T, dsn string, want map[string]int) {
	t.Helper()
	hosts := slices.Sorted(maps.Keys(want))
	waitUntil(t, "every line published", func() bool {
		p := published(t, dsn, hosts...)
		for _, h := range hosts {
			if len(p[h]) < want[h] {
				return false
			}
		}
		return true
	})
	p := published(t, dsn, hosts...)
	for _, h := range hosts {
		n := 0
		for line, times := range p[h] {
			n++
			if times != 1 {
				t.Errorf("%s's %s published %d times", h, line, times)
			}
		}
		if n != want[h] {
			t.Errorf("%s published %d lines, want %d: %v", h, n, want[h], p[h])
		}
	}
}

func testLogger(name string) *slog.Logger {
	if os.Getenv("DEBUGLOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("host", name)
	}
	return slog.New(slog.DiscardHandler)
}

// TestAHostStartsAloneOnItsJournal: a daemon (re)started while the
// shared state is down starts alone on its journal — the positions and
// blocks copied there while the database was up — and counts, blocks and
// resumes from it across a restart; once the database is back it starts
// again on it, hands over the blocks it decided alone (run once, not
// again), and every line is counted there once.
func TestAHostStartsAloneOnItsJournal(t *testing.T) {
	defer func(d time.Duration) { probeEvery = d }(probeEvery)
	probeEvery = 300 * time.Millisecond
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	hosts := startHosts(t, dsn, "mx1", "mx2")
	mx1, mx2 := hosts[0], hosts[1]
	time.Sleep(300 * time.Millisecond)
	mx1.send(t, "before@example.org", 6)
	mx2.send(t, "before@example.org", 1)
	mx1.waitRan(t, "block:before@example.org", "mx1's block of before@")
	mx2.waitRan(t, "block:before@example.org", "mx2 enforcing before@")
	time.Sleep(1500 * time.Millisecond) // copied to the journal at a tick

	// Lifted by hand on mx2 while mx1 is away: mx1's journal holds it in
	// force, and must not bring it back.
	mx1.stop()
	unban(t, dsn, "mx2", "before@example.org")
	srv.Stop(t)
	mx1.start(t) // would fail without the journal
	alone := func(h *mxHost) bool {
		h.metrics.mu.Lock()
		defer h.metrics.mu.Unlock()
		return h.metrics.health != nil && strings.Contains(h.metrics.health.Error(), "alone") && testutil.ToFloat64(h.metrics.alone) == 1
	}
	if !alone(mx1) {
		t.Error("mx1 started on its journal without saying it is alone")
	}
	mx1.send(t, "alone@example.org", 6)
	mx1.send(t, "resumed@example.org", 3)
	mx1.send(t, "split@example.org", 3)
	mx2.send(t, "split@example.org", 3)
	mx1.waitRan(t, "block:alone@example.org", "mx1 blocking alone@ on its journal")
	time.Sleep(300 * time.Millisecond) // resumed@'s three counted
	mx1.stop()
	mx1.start(t) // again alone: the journal holds its windows and blocks
	mx1.send(t, "resumed@example.org", 3)
	mx1.waitRan(t, "block:resumed@example.org", "mx1 blocking resumed@, 3 before its restart on the journal and 3 after")
	if slices.Contains(mx1.enforcedLines(), "block:split@example.org") {
		t.Fatal("split@ blocked while mx1 could not see mx2's 3")
	}

	srv.Restart(t)
	waitUntil(t, "mx1 back on the shared state", func() bool { return !alone(mx1) })
	for _, h := range hosts {
		h.waitRan(t, "block:split@example.org", h.name+" blocking split@ once the hosts see each other again")
	}
	for _, sender := range []string{"alone", "resumed"} {
		mx2.waitRan(t, "block:"+sender+"@example.org", "mx2 enforcing the block of "+sender+"@ mx1 made alone")
	}
	mx1.waitRan(t, "unblock:before@example.org", "mx1 lifting before@, lifted on mx2 while mx1 was away")
	time.Sleep(500 * time.Millisecond)
	ranOnce(t, hosts)
	publishedOnce(t, dsn, map[string]int{"mx1": 21, "mx2": 4})
	var keys []string
	for _, b := range inForce(t, dsn, "mx1", nil) {
		keys = append(keys, b.Key)
	}
	slices.Sort(keys)
	want := []string{"alone@example.org", "resumed@example.org", "split@example.org"}
	if got := keys; !slices.Equal(got, want) {
		t.Errorf("blocks in force in the shared state: %v, want %v", got, want)
	}
}

// inForce returns the blocks in force in the shared state, read as host;
// with end set, it is called with the store open for writing, before the
// store is closed.
func inForce(t *testing.T, dsn, host string, end func(state.Store, []state.Block)) []state.Block {
	t.Helper()
	st, err := state.Open(dsn, state.OpenOptions{Host: host, ReadOnly: end == nil})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	blocks, err := st.Blocks(true, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if end != nil {
		end(st, blocks)
	}
	return blocks
}

// unban ends the block in force of key as `bans unban` on host does.
func unban(t *testing.T, dsn, host, key string) {
	t.Helper()
	inForce(t, dsn, host, func(st state.Store, blocks []state.Block) {
		for _, b := range blocks {
			if b.Key == key {
				if err := st.Commit(&state.Batch{Manual: true, Ends: []state.End{{ID: b.ID, Time: time.Now(), Reason: "manual"}}}); err != nil {
					t.Fatal(err)
				}
				return
			}
		}
		t.Fatalf("no block of %s in force", key)
	})
}

// TestABlockLiftedWhileAHostWasAwayIsLiftedThere: a block in force on
// both hosts is lifted by hand on mx2 (`bans unban`, which runs the
// unblock there) while mx1's daemon is stopped; when mx1 starts again,
// its script's unblock runs there, once.
func TestABlockLiftedWhileAHostWasAwayIsLiftedThere(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	hosts := startHosts(t, dsn, "mx1", "mx2")
	mx1 := hosts[0]
	time.Sleep(300 * time.Millisecond)
	mx1.send(t, "flood@example.org", 6)
	for _, h := range hosts {
		h.waitRan(t, "block:flood@example.org", h.name+" enforcing flood@")
	}
	time.Sleep(1500 * time.Millisecond) // copied to mx1's journal at a tick
	mx1.stop()
	unban(t, dsn, "mx2", "flood@example.org") // as `bans unban` there, which lifts it there
	mx1.start(t)
	mx1.waitRan(t, "unblock:flood@example.org", "mx1 lifting flood@ at its start")
	time.Sleep(1500 * time.Millisecond) // and not again at the next tick
	ranOnce(t, hosts)
}
