package pipeline

import (
	"time"

	"github.com/bombwatch/bombwatch/state"
)

// pruneStats asks the store to drop the stats older than the retention,
// once an hour of log time.
func (p *Pipeline) pruneStats(b *state.Batch) {
	if p.opts.Retention > 0 && p.clock.Sub(p.pruned) >= time.Hour {
		b.PruneStats = p.clock.Add(-p.opts.Retention)
		p.pruned = p.clock
	}
}
