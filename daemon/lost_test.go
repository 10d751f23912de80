package daemon

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

	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/pipeline"
)

// TestLostStateIsSaid: a state that lost its last saves — here all of them,
// as when its -wal is removed before the first checkpoint — is noticed at
// start by the generation noted beside it, said in the log, and an input
// with start: end is read from its start, so what it held is counted
// again instead of skipped.
func TestLostStateIsSaid(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	db := filepath.Join(dir, "state.db")
	yaml := fmt.Sprintf("state: %s\ninputs: [{path: %s, poll: 20ms, start: end}]\nrules:\n  - {name: m, on: [accepted], key: sender, limit: 2, per: 1h}\n", db, log)
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(log, nil, 0o644)
	run := func(write func()) (string, []pipeline.Detection) {
		var logs syncBuffer
		var got []pipeline.Detection
		var mu sync.Mutex
		ctx, cancel := context.WithCancel(context.Background())
		ready, done := make(chan struct{}), make(chan error, 1)
		go func() {
			done <- Run(ctx, Options{Load: func() (*config.Config, error) { return cfg, nil }, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
				Ready: ready, OnDetection: func(d pipeline.Detection) { mu.Lock(); got = append(got, d); mu.Unlock() }})
		}()
		<-ready
		if write != nil {
			write()
		}
		time.Sleep(1500 * time.Millisecond) // read, saved, and noted at a tick
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return logs.String(), got
	}
	_, got := run(func() {
		f, _ := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
		for i := range 3 {
			fmt.Fprintf(f, "2026-11-20T10:00:%02dZ mx postfix/qmgr[1]: LOSTQ%04d: from=<l@example.org>, size=1, nrcpt=1 (queue active)\n", i, i)
		}
		f.Close()
	})
	if len(got) != 1 {
		t.Fatalf("first run: %d detections, want 1", len(got))
	}
	lock, _ := os.ReadFile(db + ".lock")
	if fields := strings.Fields(string(lock)); len(fields) != 2 || fields[1] == "0" {
		t.Fatalf("no generation noted beside the state: %q", lock)
	}
	// The state loses everything it saved.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(db + suffix)
	}
	logs, got := run(nil)
	if !strings.Contains(logs, "the state is older than it was last saved") {
		t.Errorf("the loss was not said:\n%s", logs)
	}
	if len(got) != 1 {
		t.Errorf("after the loss: %d detections, want the block again from the log read from its start", len(got))
	}
	// Once saved again, the next start is quiet.
	if logs, _ := run(nil); strings.Contains(logs, "older than it was last saved") {
		t.Errorf("said again after a good run:\n%s", logs)
	}
}
