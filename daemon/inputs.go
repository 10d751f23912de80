package daemon

import (
	"log/slog"
	"time"

	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/input"
	"github.com/bombwatch/bombwatch/state"
)

// Specs are the config's inputs, as the input package reads them.
func Specs(cfg *config.Config) []input.Spec {
	specs := make([]input.Spec, 0, len(cfg.Inputs))
	for _, ic := range cfg.Inputs {
		specs = append(specs, input.Spec{Path: ic.Path, Format: ic.Format, FromStart: ic.Start == "beginning",
			Poll: time.Duration(ic.Poll), Units: ic.Units, Identifiers: ic.Identifiers})
	}
	return specs
}

// inputs are the config's inputs, followed and merged by time.
type inputs struct {
	*input.Merger
	globs   *input.Globs
	log     *slog.Logger
	metrics *Metrics
	// What the metrics were last told, by source.
	lines, skipped map[*input.Source]int64
	// shared, when the state is shared with other hosts: their events
	// are merged with this host's (see addHosts).
	shared state.Shared
	opts   input.Options
	hosts  map[string]bool
}

// openInputs opens the config's inputs at their saved positions, before
// the daemon says it is ready, so that no line written after that is taken
// for the past.
func openInputs(cfg *config.Config, saved map[string]state.Position, now func() time.Time, log *slog.Logger, metrics *Metrics, shared state.Shared) *inputs {
	loc := cfg.Location
	if loc == nil {
		loc = time.Local
	}
	o := input.Options{Follow: true, Location: loc, Now: now, Positions: saved, Stats: true, Log: log}
	specs := Specs(cfg)
	srcs, errs := input.OpenSources(specs, o)
	for _, err := range errs {
		log.Error("input", "err", err)
	}
	m := input.NewMerger(srcs)
	m.Delay, m.Now = time.Duration(cfg.MergeDelay), now
	in := &inputs{Merger: m, globs: input.NewGlobs(specs, o), log: log, metrics: metrics,
		lines: map[*input.Source]int64{}, skipped: map[*input.Source]int64{},
		shared: shared, opts: o, hosts: map[string]bool{}}
	if shared != nil {
		m.Publish = true
		in.addHosts()
	}
	return in
}

// remotePoll is how often another host's events are looked for when no
// notice comes.
const remotePoll = time.Second

// addHosts merges the events of the hosts that came to share the state.
func (in *inputs) addHosts() {
	hosts, err := in.shared.Hosts()
	if err != nil {
		in.log.Error("input: the other hosts sharing the state", "err", err)
		return
	}
	for _, h := range hosts {
		if in.hosts[h] {
			continue
		}
		in.hosts[h] = true
		feed := func(from int64, fn func(int64, []byte) error) error { return in.shared.Events(h, from, fn) }
		in.log.Info("input: another host's events", "host", h)
		in.Add(input.RemoteSource(h, feed, in.shared.Notices(h), remotePoll, in.opts))
	}
}

// scan merges the files that came to match a glob, and, unless the
// shared state is out of reach, the events of hosts that came to share
// it.
func (in *inputs) scan(reachable bool) {
	if in.shared != nil && reachable {
		in.addHosts()
	}
	for _, s := range in.globs.Scan(in.Sources()) {
		in.log.Info("input", "path", s.Name, "glob", true)
		in.Add(s)
	}
}

// count tells the metrics what the sources read since, and how far
// behind they are.
func (in *inputs) count() {
	now := time.Now()
	for _, s := range in.Sources() {
		in.metrics.lag.WithLabelValues(s.Name).Set(s.Behind(now).Seconds())
		if n := s.LinesRead(); n > in.lines[s] {
			in.metrics.lines.WithLabelValues(s.Name).Add(float64(n - in.lines[s]))
			in.lines[s] = n
		}
		if n := s.SkippedLines(); n > in.skipped[s] {
			in.metrics.skipped.WithLabelValues(s.Name).Add(float64(n - in.skipped[s]))
			in.skipped[s] = n
		}
	}
}
