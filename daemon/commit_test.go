package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/sqlite"
	"github.com/bombwatch/bombwatch/state"
)

// flakyStore is the SQLite store whose commits fail while broken is set,
// as on a full disk.
type flakyStore struct {
	state.Store
	broken atomic.Bool
}

func (f *flakyStore) Commit(b *state.Batch) error {
	if f.broken.Load() {
		return errors.New("disk full")
	}
	return f.Store.Commit(b)
}

// syncBuffer is a log written by the daemon's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestFailedCommitIsSeen: when the state cannot be saved, the daemon says
// so at once — a log line, /healthz failing, a metric — stops reading, and
// tries again each tick; once it can save, it reads on, and every line is
// saved exactly once.
func TestFailedCommitIsSeen(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	os.WriteFile(log, nil, 0o644)
	dbPath := filepath.Join(dir, "state.db")
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf("state: %s\ninputs: [{path: %s, poll: 20ms, start: beginning}]\nrules:\n  - {name: m, on: [accepted], key: sender, limit: 100, per: 1m}\n", dbPath, log)))
	if err != nil {
		t.Fatal(err)
	}
	var store *flakyStore
	var logs syncBuffer
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	metrics := NewMetrics()
	go func() {
		done <- Run(ctx, Options{
			Metrics: metrics,
			Load:    func() (*config.Config, error) { return cfg, nil },
			Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
			Ready:   ready,
			Tick:    tick,
			OpenStore: func(path string) (state.Store, error) {
				s, err := sqlite.Open(path)
				store = &flakyStore{Store: s}
				return store, err
			},
		})
	}()
	<-ready
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go metrics.Serve(ctx, ln, slog.New(slog.DiscardHandler))
	healthz := func() int {
		resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	write := func(from, n int) {
		f, _ := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
		for i := from; i < from+n; i++ {
			fmt.Fprintf(f, "2026-11-20T10:00:%02dZ mx postfix/qmgr[1]: FLAKY%05d: from=<s%d@example.org>, size=1, nrcpt=1 (queue active)\n", i%60, i, i)
		}
		f.Close()
	}
	failuresBefore := testutil.ToFloat64(metrics.commitFailures)

	write(0, 10)
	waitFor(t, func() bool { return strings.Contains(positionsOf(t, dbPath, log), "line=10") }, func() { tick <- time.Now() })
	store.broken.Store(true)
	write(10, 10)
	// The first failed save is logged at the tick that sees it.
	waitFor(t, func() bool { return strings.Contains(logs.String(), "state not saved: reading paused until it is") }, func() { tick <- time.Now() })
	if !strings.Contains(logs.String(), "disk full") {
		t.Errorf("the log line does not say why:\n%s", logs.String())
	}
	if code := healthz(); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz while the state cannot be saved: %d", code)
	}
	if n := testutil.ToFloat64(metrics.commitFailures) - failuresBefore; n < 1 {
		t.Errorf("bombwatch_state_commit_failures_total went up by %v", n)
	}
	write(20, 10) // read and counted only once it can save
	store.broken.Store(false)
	waitFor(t, func() bool { return strings.Contains(positionsOf(t, dbPath, log), "line=30") }, func() { tick <- time.Now() })
	if code := healthz(); code != http.StatusOK {
		t.Errorf("/healthz once saved again: %d", code)
	}
	if !strings.Contains(logs.String(), "state saved again") {
		t.Errorf("no log line for the recovery:\n%s", logs.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Every line's event counted once: the stats of the minute say 30.
	s, err := sqlite.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var accepted int64
	err = s.Stats(0, 1<<40, func(st *state.Stat) {
		if st.KeyType == "kind" && st.Key == "accepted" {
			accepted += st.Messages
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if accepted != 30 {
		t.Errorf("accepted events saved: %d, want 30", accepted)
	}
}

// waitFor steps the daemon until ok, for at most 10 s.
func waitFor(t *testing.T, ok func() bool, step func()) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if ok() {
			return
		}
		step()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("timed out")
}

// positionsOf reads the saved position of an input as "line=N".
func positionsOf(t *testing.T, db, input string) string {
	s, err := sqlite.Open(db)
	if err != nil {
		return ""
	}
	defer s.Close()
	snap, err := s.Load()
	if err != nil {
		return ""
	}
	return fmt.Sprintf("line=%d", snap.Positions[input].Line)
}

// slowWindows is a store whose windows take their time to load: until a
// file exists, for at most 5 s. It notes whether the file appeared while
// the windows were loading.
type slowWindows struct {
	state.Store
	marker    string
	sawMarker atomic.Bool
}

func (s *slowWindows) Windows(fn func(*state.Window)) error {
	_, err := os.Stat(s.marker)
	for end := time.Now().Add(5 * time.Second); err != nil && time.Now().Before(end); _, err = os.Stat(s.marker) {
		time.Sleep(10 * time.Millisecond)
	}
	s.sawMarker.Store(err == nil)
	return s.Store.Windows(fn)
}

// TestBlocksAreEnforcedBeforeTheWindowsLoad: at start, a block in force
// whose hook had not run is applied while the windows load — a state of
// millions of keys takes seconds to load, and enforcement does not wait
// for it.
func TestBlocksAreEnforcedBeforeTheWindowsLoad(t *testing.T) {
	dir := t.TempDir()
	log, dbPath, marker := filepath.Join(dir, "mail.log"), filepath.Join(dir, "state.db"), filepath.Join(dir, "applied")
	os.WriteFile(log, nil, 0o644)
	s, err := sqlite.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	b := &state.Batch{Clock: now, Blocks: []state.Block{{ID: 1, Rule: "c", KeyType: "client_ip", Key: "192.0.2.9", Since: now,
		Until: now.Add(time.Hour), Value: 11, Limit: 10, Window: time.Minute, Actions: map[string]string{"log": state.Applied, "hook": state.Pending}}}}
	b.Segment.Add(&state.Window{Rule: "c/0", Key: "192.0.2.9", Times: []int64{now.UnixNano()}, Touched: now.UnixNano()})
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	s.Close()
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(`state: %s
inputs: [{path: %s, poll: 20ms}]
rules:
  - {name: c, on: [accepted], key: client_ip, limit: 10, per: 1m, block: 1h, actions: [log, hook]}
actions:
  hook: {type: script, command: [/bin/touch, %s]}
`, dbPath, log, marker)))
	if err != nil {
		t.Fatal(err)
	}
	var store *slowWindows
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			Load:   func() (*config.Config, error) { return cfg, nil },
			Logger: slog.New(slog.DiscardHandler),
			Ready:  ready,
			OpenStore: func(path string) (state.Store, error) {
				s, err := sqlite.Open(path)
				store = &slowWindows{Store: s, marker: marker}
				return store, err
			},
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !store.sawMarker.Load() {
		t.Errorf("the block in force was applied only once the windows had loaded")
	}
}
