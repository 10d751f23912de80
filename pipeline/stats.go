package pipeline

import (
	"time"

	"github.com/bombwatch/bombwatch/state"
)

// AddStats hands on stats counted where the lines were read: they are
// saved with the next commit. Call it once the events they count have run.
func (p *Pipeline) AddStats(stats []state.Stat) {
	if p.opts.Store != nil {
		p.batch.Stats = append(p.batch.Stats, stats...)
	}
}

// pruneStats asks the store to drop the stats older than the retention,
// once an hour of log time.
func (p *Pipeline) pruneStats(b *state.Batch) {
	if p.opts.Retention > 0 && p.clock.Sub(p.pruned) >= time.Hour {
		b.PruneStats = p.clock.Add(-p.opts.Retention)
		p.pruned = p.clock
	}
}
