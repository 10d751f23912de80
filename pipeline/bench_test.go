package pipeline_test

import (
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
