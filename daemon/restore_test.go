package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/pipeline"
	"github.com/bombwatch/bombwatch/sqlite"
)

// TestRestartRestoresEveryKeyWhileIdle: a daemon started on a state of
// many keys restores those no event needs while none comes: the keys
// gauge reaches them all without a line read.
func TestRestartRestoresEveryKeyWhileIdle(t *testing.T) {
	const senders = 5000
	dir := t.TempDir()
	log, db := filepath.Join(dir, "mail.log"), filepath.Join(dir, "state.db")
	os.WriteFile(log, nil, 0o644)
	yaml := fmt.Sprintf("state: %s\ninputs: [{path: %s, poll: 20ms}]\nrules:\n  - {name: s, on: [accepted], key: sender, limit: 100, per: 24h}\n", db, log)
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlite.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	p, err := config.NewPipeline(cfg, pipeline.Options{Store: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range senders {
		p.Event(&parsers.Event{Time: now.Add(time.Duration(i-senders) * time.Millisecond), Kind: parsers.Accepted,
			Sender: fmt.Sprintf("s%d@example.net", i), HasSender: true, NRcpt: 1})
	}
	if err := p.CommitNow(nil, true); err != nil {
		t.Fatal(err)
	}
	p.Close()
	store.Close()

	metrics := NewMetrics()
	_, stop := runWithMetrics(t, yaml, metrics)
	defer stop()
	var keys float64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if keys = testutil.ToFloat64(metrics.keys); keys == senders {
			return
		}
	}
	t.Errorf("the keys gauge says %v, want %d restored", keys, senders)
}
