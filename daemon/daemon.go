// Package daemon is `bombwatch run`: it follows the configured logs as they
// are written, runs their events through the pipeline, lifts blocks on
// time, and saves its state so that a restart — even after kill -9 — counts
// every line exactly once.
//
// Each input reads and parses in a goroutine of its own and hands batches
// of events, with the position after them, to the one goroutine that runs
// the pipeline; that goroutine commits the windows, blocks and positions
// together. SIGHUP reloads the config (a bad one is refused and the old one
// kept); SIGTERM and SIGINT commit and return.
package daemon

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/bombwatch/bombwatch/actions"
	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/internal/safefile"
	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/pipeline"
	_ "github.com/bombwatch/bombwatch/postgres" // state: postgres://…
	_ "github.com/bombwatch/bombwatch/sqlite"   // the embedded store, state.Open's default
	"github.com/bombwatch/bombwatch/state"
)

// Options are the daemon's dependencies.
type Options struct {
	// Load reads the config: at start and at each reload.
	Load   func() (*config.Config, error)
	Logger *slog.Logger
	// Now is the wall clock, by which blocks are lifted when no line comes.
	// Nil lifts blocks by the logs' own clock only, as replay does.
	Now func() time.Time
	// Reload delivers reload requests (SIGHUP).
	Reload <-chan struct{}
	// OnDetection, when set, receives every block and unblock.
	OnDetection func(pipeline.Detection)
	// Ready, when set, is closed once the inputs are followed.
	Ready chan<- struct{}
	// OpenStore opens the state; nil opens the config's (state.Open).
	OpenStore func(dsn string) (state.Store, error)
	// Metrics are counted here and served by Metrics.Serve; nil counts
	// into a set of the daemon's own.
	Metrics *Metrics
	// Tick paces the daemon's housekeeping: lifting blocks by the clock,
	// saving the state when no line comes, trying a failed save again.
	// Nil ticks every second; tests step it.
	Tick <-chan time.Time
}

// aloneMax bounds what a host that cannot reach its shared state keeps
// unsaved (see runConfig): past it, reading waits, as for a state of its
// own that cannot be saved.
const aloneMax = 256 << 20

// aloneIDs is how many block IDs a host sharing its state keeps set
// aside for the blocks it decides alone (see pipeline.Options.AloneIDs):
// a botnet's worth.
const aloneIDs = 1024

// runMax is how many events run between two looks at the daemon's other
// work.
const runMax = 4096

// commitEvery bounds the time between commits while lines come in: what a
// crash can cost to re-read, and how stale the state others read may be.
const commitEvery = 200 * time.Millisecond

// Run runs until ctx is done, then commits and returns nil. It returns an
// error when the state cannot be opened or saved.
func Run(ctx context.Context, o Options) error {
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	cfg, err := o.Load()
	if err != nil {
		return err
	}
	var lock *safefile.Lock
	defer func() { lock.Unlock() }()
	for {
		// One daemon per state, held across reloads: two would count every
		// line twice and run every hook twice.
		if scheme, path := state.Scheme(cfg.State); scheme == "sqlite" && (lock == nil || lock.Path != path+".lock") {
			l, err := safefile.LockState(path)
			if err != nil {
				return err
			}
			lock.Unlock()
			lock = l
		}
		next, err := runConfig(ctx, cfg, o, lock)
		if err != nil || next == nil {
			return err
		}
		cfg = next
		o.Ready = nil // closed by the first run
	}
}

// runConfig runs one config until ctx is done (it returns nil, nil) or a
// valid new config is loaded (it returns it, after committing).
func runConfig(ctx context.Context, cfg *config.Config, o Options, lock *safefile.Lock) (*config.Config, error) {
	log, metrics := o.Logger, o.Metrics
	open := o.OpenStore
	if open == nil {
		open = func(dsn string) (state.Store, error) { return state.Open(dsn, state.OpenOptions{Host: cfg.Host}) }
	}
	store, err := open(cfg.State)
	// A host sharing a PostgreSQL state that cannot open it starts alone
	// on its journal, and starts again on the shared state once it can
	// (see journal). standing is why it is alone, said until then.
	var jr *journal
	var reached <-chan struct{}
	var standing error
	if jpath := cfg.JournalPath(); jpath != "" {
		var jerr error
		jr, jerr = openJournal(jpath)
		switch {
		case err != nil && jerr != nil:
			return nil, fmt.Errorf("%w; and no journal to start alone on: %v", err, jerr)
		case err != nil:
			defer jr.Close(false)
			standing = fmt.Errorf("alone: the shared state cannot be reached, counting this host's events only, on the journal %s: %w", jpath, err)
			log.Error("shared state out of reach at start: going on alone on this host's journal until it is", "state", state.Redact(cfg.State), "journal", jpath, "err", err)
			store, err = jr.store, nil
			probing, stopProbing := context.WithCancel(ctx)
			defer stopProbing()
			reached = probe(probing, open, cfg.State)
			metrics.setHealth(standing)
			metrics.alone.Set(1)
			jr = nil // run on, not copied to
		case jerr != nil:
			log.Warn("no journal: this host cannot start while the shared state is out of reach", "journal", jpath, "err", jerr)
		default:
			defer jr.Close(true)
		}
	}
	if err != nil {
		return nil, err
	}
	defer store.Close()
	if standing == nil {
		metrics.setHealth(nil) // a run alone on the journal before this one
		metrics.alone.Set(0)
	}
	// Bans made by hand while running are picked up when this moves on;
	// in a state shared with other hosts, their blocks and ends too, at
	// once when a notice comes.
	changes := store.ManualChanges
	var blockNotices <-chan struct{}
	shared, _ := store.(state.Shared)
	if shared != nil {
		changes, blockNotices = shared.BlockChanges, shared.BlockNotices()
	}
	var away []state.Block
	if jr != nil && shared != nil {
		if away, err = jr.handOver(shared, store, log); err != nil {
			return nil, err
		}
	}
	manual, err := changes()
	if err != nil {
		return nil, err
	}
	// A slow hook never stalls reading: actions wait in the Executor's
	// queue, and SIGTERM ends their retries.
	actCtx, stopActions := context.WithCancel(ctx)
	exec := &actions.Executor{Log: log, Act: true, Context: actCtx,
		Failed:  func(action string, _ error) { metrics.actionFailures.WithLabelValues(action).Inc() },
		Dropped: func(action string) { metrics.actionsDropped.WithLabelValues(action).Inc() }}
	// The blocks in force are enforced before the windows are read: a
	// state of millions of keys takes seconds to load, the blocks not.
	popts := pipeline.Options{Store: store, Executor: exec, Logger: log, DeferWindows: true, Host: cfg.HostName(), OnDetection: func(d pipeline.Detection) {
		metrics.detections.WithLabelValues(d.Rule, d.Event).Inc()
		if o.OnDetection != nil {
			o.OnDetection(d)
		}
	}}
	if shared != nil {
		popts.AloneIDs = aloneIDs
	}
	p, err := config.NewPipeline(cfg, popts)
	if err != nil {
		stopActions()
		return nil, err
	}
	// At SIGTERM and reload, what waits is dropped, and a hook still
	// running after a second is left to finish on its own: the blocks in
	// force are applied again at the start.
	defer func() {
		stopActions()
		if !exec.WaitFor(time.Second) {
			log.Warn("actions still running; not waiting for them")
		}
	}()
	defer p.Close()
	p.LiftedAway(away)
	// Firewall tables are made where they are missing, keeping what they
	// hold; the blocks that expired while bombwatch was down are lifted,
	// and what the firewall or a map lost of those still in force is
	// applied again for the time they have left (see Pipeline.Reapply).
	setup(ctx, p, log)
	if o.Now != nil {
		p.Advance(o.Now())
		p.Reapply(actCtx, o.Now())
	} else {
		p.Reapply(actCtx, p.Clock())
	}
	loading := time.Now()
	if err := p.RestoreWindows(); err != nil {
		return nil, err
	}
	log.Debug("windows read", "windows", p.Unrestored(), "took", time.Since(loading).Round(time.Millisecond))
	// The windows are restored as events need them, and the rest when
	// none waits (see pipeline.RestoreWindows): reading goes on meanwhile.
	restoring := p.Unrestored() > 0

	// A state older than the generation noted beside it lost its last
	// saves: its -wal removed, or the file restored from a backup. Say so;
	// inputs resume from the positions it still holds, and one it holds
	// none for is read from its start, not its end, so that what came
	// since is counted again rather than lost.
	gens, _ := store.(interface{ Generation() int64 })
	if gens != nil && lock != nil && gens.Generation() < lock.Noted {
		log.Error("the state is older than it was last saved: its -wal was lost or it was restored from a backup; reading inputs from the positions it holds, or from their start",
			"state", cfg.State, "saved", lock.Noted, "found", gens.Generation())
		cfg = withInputsFromStart(cfg)
	}
	noteSaved := func() {
		if gens != nil {
			lock.Note(gens.Generation())
		}
	}
	defer noteSaved()
	wall := o.Now
	if wall == nil {
		wall = time.Now
	}
	ins := openInputs(cfg, p.Positions(), wall, log, metrics, shared)
	defer ins.Close()
	if o.Ready != nil {
		close(o.Ready)
		o.Ready = nil
	}
	args := []any{"config", cfg.File, "state", cfg.State, "inputs", len(cfg.Inputs), "rules", len(cfg.Rules)}
	if len(cfg.Files) > 1 {
		args = append(args, "drop_ins", cfg.Files[1:])
	}
	log.Info("running", args...)

	dirty := false
	// The first events are saved at once: a daemon killed again and again
	// soon after it starts (a crash loop) still moves its positions on,
	// rather than re-reading the same backlog until rotation removes it.
	var lastCommit time.Time
	// A state that cannot be saved (disk full, read-only, locked) stops
	// the reading of logs — positions go on being saved with the state
	// they produced, so nothing is lost or counted twice — and is tried
	// again every tick, the failed batch first. It is logged at once, then
	// once a minute; /healthz fails and a metric counts it meanwhile.
	//
	// A state shared with other hosts (PostgreSQL) that cannot be reached
	// does not stop detection: the daemon goes on alone — its own logs
	// counted, its blocks enforced, the other hosts' events missing — with
	// what it saw kept unsaved, up to aloneMax, and sent with the next
	// save that succeeds. Its positions go with it: a kill -9 meanwhile
	// loses nothing, the logs are read again from the last save.
	var failing error
	var failLogged time.Time
	saved := func(err error) {
		if err == nil {
			if failing != nil {
				if shared != nil {
					log.Info("shared state saved again: what this host saw alone is sent; counting with the other hosts again", "state", state.Redact(cfg.State))
				} else {
					log.Info("state saved again: reading on", "state", cfg.State)
				}
				metrics.setHealth(standing)
				if standing == nil {
					metrics.alone.Set(0)
				}
			}
			failing = nil
			return
		}
		metrics.commitFailures.Inc()
		if shared != nil {
			err = fmt.Errorf("alone: the shared state cannot be saved, counting this host's events only: %w", err)
		}
		if failing == nil || time.Since(failLogged) >= time.Minute {
			if shared != nil {
				log.Error("shared state not saved: going on alone, on this host's own events, until it is", "state", state.Redact(cfg.State), "err", err,
					"unsaved_bytes", p.Unsaved())
			} else {
				log.Error("state not saved: reading paused until it is", "state", cfg.State, "err", err)
			}
			failLogged = time.Now()
		}
		if shared != nil {
			metrics.alone.Set(1)
		}
		failing = err
		metrics.setHealth(err)
	}
	commit := func(wait bool) error {
		var err error
		if dirty || wait || p.Blocking() {
			start := time.Now()
			err = p.CommitNow(ins.Merger, wait)
			metrics.commitSeconds.Observe(time.Since(start).Seconds())
			dirty, lastCommit = false, time.Now()
		} else {
			// A commit under way is seen through: its failure is known
			// now. One that failed is tried again, in the background.
			err = p.Retry()
		}
		saved(err)
		return err
	}
	// Events run between the other work: at most runMax at a time, so
	// that a long catch-up still ticks, commits and answers SIGTERM.
	var kinds [8]int
	var evicted int64 // p.Stats.Evicted counted in the metric
	countKinds := func() {
		for _, k := range parsers.Kinds() {
			if kinds[k] > 0 {
				metrics.events.WithLabelValues(k.String()).Add(float64(kinds[k]))
				kinds[k] = 0
			}
		}
	}
	runReady := func() (more bool, wait time.Duration) {
		for range runMax {
			e, wait, _ := ins.Next()
			if e == nil {
				return false, wait
			}
			kinds[e.Kind&7]++
			p.Event(e)
			dirty = true
		}
		return true, 0
	}
	var journalLogged time.Time
	// Also while alone: the blocks decided then are in the journal, to be
	// enforced, not decided again, by a restart before the state is back.
	copyToJournal := func() {
		if jr == nil {
			return
		}
		if err := jr.copy(p, wall()); err != nil && time.Since(journalLogged) >= time.Minute {
			log.Warn("journal not written: this host could not start alone on it", "journal", jr.path, "err", err)
			journalLogged = time.Now()
		}
	}
	stop := func() error {
		countKinds()
		ins.count()
		dirty = true
		if shared != nil && failing != nil {
			// Alone, a save would wait for the database's timeout, twice,
			// to fail. Nothing is lost without it: the lines since the
			// last save are read again at the next start, and the blocks
			// decided alone are in the journal.
			log.Info("stopping alone: the lines read since the last save are read again at the next start", "unsaved_bytes", p.Unsaved())
			copyToJournal()
			store.Close() // gives up the save under way: p.Close does not wait for it
			return nil
		}
		if err := commit(true); err != nil {
			return err
		}
		copyToJournal()
		return p.Close()
	}
	syncBlocks := func() {
		// A shared state out of reach is not asked until a save succeeds:
		// each question would wait for its timeout.
		if shared != nil && failing != nil {
			return
		}
		n, err := changes()
		if err != nil && shared != nil {
			saved(err)
			return
		}
		if err == nil && n != manual {
			if err := p.SyncManual(ins.Merger); err != nil {
				saved(err)
			} else {
				manual = n
			}
		}
	}
	tick := o.Tick
	if tick == nil {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
	}
	ready := make(chan struct{})
	close(ready)
	idle := time.NewTimer(time.Hour)
	defer idle.Stop()
	for {
		var wake <-chan struct{}
		var idleC <-chan time.Time
		more := false
		// Else reading waits for the state to be saved, but for a shared
		// state's host going on alone.
		if failing == nil || shared != nil && p.Unsaved() < aloneMax {
			var wait time.Duration
			more, wait = runReady()
			if failing == nil && (dirty && time.Since(lastCommit) >= commitEvery || p.Blocking()) {
				commit(false)
			}
			wake = ins.Wake()
			if dirty && failing == nil {
				// Saved within commitEvery of the last event run, even
				// when nothing else comes.
				if due := commitEvery - time.Since(lastCommit); wait == 0 || due < wait {
					wait = max(due, time.Millisecond)
				}
			}
			if wait > 0 {
				idle.Reset(wait)
				idleC = idle.C
			}
		}
		if !more && restoring {
			if more = p.RestoreNext(); !more {
				restoring = false
				log.Debug("windows restored", "keys", p.Keys(), "took", time.Since(loading).Round(time.Millisecond))
			}
		}
		if more {
			wake = ready // more to run: look at the rest, and go on
		}
		select {
		case <-ctx.Done():
			log.Info("stopping")
			return nil, stop()
		case <-wake:
			dirty = true // a position may have moved, past lines without events
		case <-idleC:
		case <-tick:
			noteSaved()
			if o.Now != nil {
				p.Advance(o.Now())
			}
			metrics.active.Reset()
			for _, a := range p.Active() {
				metrics.active.WithLabelValues(a.Rule).Inc()
			}
			metrics.keys.Set(float64(p.Keys()))
			metrics.evicted.Add(float64(p.Stats.Evicted - evicted))
			evicted = p.Stats.Evicted
			countKinds()
			ins.count()
			ins.scan(failing == nil)
			syncBlocks()
			commit(false)
			copyToJournal()
		case <-reached:
			log.Info("shared state reached: leaving the journal, starting again on the shared state", "state", state.Redact(cfg.State))
			if err := stop(); err != nil {
				return nil, err
			}
			return cfg, nil
		case <-blockNotices:
			syncBlocks()
		case <-o.Reload:
			next, err := o.Load()
			if err != nil {
				log.Error("reload refused: keeping the running config", "err", err)
				continue
			}
			log.Info("reloading", "config", next.File)
			if err := stop(); err != nil {
				return nil, err
			}
			return next, nil
		}
	}
}

// withInputsFromStart is cfg with inputs read from their start when no
// position is saved for them.
func withInputsFromStart(cfg *config.Config) *config.Config {
	c := *cfg
	c.Inputs = slices.Clone(cfg.Inputs)
	for i := range c.Inputs {
		c.Inputs[i].Start = "beginning"
	}
	return &c
}

// setup runs the actions' Setup, for those that are to run: it makes what
// is missing and keeps what is there.
func setup(ctx context.Context, p *pipeline.Pipeline, log *slog.Logger) {
	for _, a := range p.Actions() {
		if s, ok := a.(actions.Setupper); ok && !actions.IsDryRun(a) {
			if err := s.Setup(ctx); err != nil {
				log.Error("action setup", "action", a.Name(), "err", err)
			}
		}
	}
}

// Cleanup removes what the config's actions set up: bombwatch's firewall
// table, its map entries.
func Cleanup(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	p, err := config.NewPipeline(cfg, pipeline.Options{Logger: log})
	if err != nil {
		return err
	}
	var first error
	for _, a := range p.Actions() {
		if s, ok := a.(actions.Setupper); ok && !actions.IsDryRun(a) {
			if err := s.Cleanup(ctx); err != nil {
				log.Error("action cleanup", "action", a.Name(), "err", err)
				first = cmp.Or(first, err)
			} else {
				log.Info("cleaned up", "action", a.Name())
			}
		}
	}
	return first
}

// LoadFile returns a loader of the config at path (merged over the
// built-in one, see config.Load), or of the built-in one. A config with no
// input or no rule is refused: the daemon would run doing nothing.
func LoadFile(path string) func() (*config.Config, error) {
	return func() (*config.Config, error) {
		if path == "" {
			return config.Default(), nil
		}
		c, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		var errs config.Errors
		if len(c.Inputs) == 0 {
			errs = append(errs, &config.Error{File: c.File, Field: "inputs", Msg: "none: run has no log to follow"})
		}
		if len(c.Rules) == 0 {
			errs = append(errs, &config.Error{File: c.File, Field: "rules", Msg: "none (rules: [] removed them all): run would count nothing"})
		}
		if errs != nil {
			return nil, errs
		}
		return c, nil
	}
}

// NewLogger makes the daemon's logger from the config.
func NewLogger(cfg *config.Config, w *os.File) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
