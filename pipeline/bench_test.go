package pipeline_test

import (
	"fmt"
	. "github.com/bombwatch/bombwatch/pipeline"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/input"
	"github.com/bombwatch/bombwatch/sqlite"
	"github.com/bombwatch/bombwatch/state"
)

// BenchmarkReplay runs the whole pipeline — read, parse, rules, windows,
// log actions — over a generated 200k-line Postfix log, with the state in
// memory and in SQLite on disk.
func BenchmarkReplay(b *testing.B) {
	log := generate(b, "postfix", 200000, 9)
	for _, withDB := range []bool{false, true} {
		name := "memory"
		if withDB {
			name = "sqlite"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			lines := int64(0)
			for b.Loop() {
				var store state.Store
				if withDB {
					s, err := sqlite.Open(filepath.Join(b.TempDir(), "state.db"))
					if err != nil {
						b.Fatal(err)
					}
					store = s
				}
				p, err := config.NewPipeline(config.Default(), Options{Store: store, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				src, err := input.OpenSource(input.Spec{Path: log}, input.Options{Location: time.UTC})
				if err != nil {
					b.Fatal(err)
				}
				if err := p.Process(input.NewMerger([]*input.Source{src})); err != nil {
					b.Fatal(err)
				}
				lines += src.Stats.Lines
				src.Close()
				if store != nil {
					store.Close()
				}
			}
			b.ReportMetric(float64(lines)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}

// BenchmarkStartWithNetworkBlocks starts a pipeline (the blocks in force
// only, as the daemon does first) on a state holding 100 blocks of a
// network, each enforced on the most addresses a block holds (4,096): what
// a botnet leaves behind, to be enforced again within a second of a
// restart.
func BenchmarkStartWithNetworkBlocks(b *testing.B) {
	store := state.NewMemory()
	batch := &state.Batch{}
	for id := range int64(100) {
		blk := state.Block{ID: id + 1, Rule: "botnet", KeyType: "client_net", Key: fmt.Sprintf("10.%d.0.0/16", id),
			Since: ref, Until: ref.Add(time.Hour), Value: 11, Limit: 10, Window: time.Minute, Actions: map[string]string{"log": state.Applied}}
		for i := range 4096 {
			blk.Members = append(blk.Members, fmt.Sprintf("10.%d.%d.%d", id, i>>8, i&255))
		}
		batch.Blocks = append(batch.Blocks, blk)
	}
	if err := store.Commit(batch); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := config.NewPipeline(config.Default(), Options{Store: store, Logger: slog.New(slog.DiscardHandler), DeferWindows: true}); err != nil {
			b.Fatal(err)
		}
	}
}
