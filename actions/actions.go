// Package actions does something about a detection: logs it, runs a hook,
// mails the postmaster, blocks the key in a firewall (nftables, iptables
// with ipset) or an MTA map (Postfix, sendmail, qmail), and undoes it when
// the block ends.
//
// Actions know nothing of parsers or mail: they receive a Detection (a
// rule, a key and its type, the numbers that crossed the limit) and treat
// every string in it as data. A key comes from a log line that an attacker
// may have written, so no action ever passes it through a shell.
package actions

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Detection is a block starting or ending.
type Detection struct {
	Event   string // "block" or "unblock"
	Time    time.Time
	BlockID int64
	Rule    string
	KeyType string
	Key     string
	Value   float64
	Limit   float64
	Window  time.Duration
	Until   time.Time // zero: no end by time
	// Reason is why an unblock happened: expired, released (the measure
	// fell back under the limit: "accepted again"), forgiven, unban.
	Reason string
	// Now is when the action runs, by the pipeline's clock: a firewall
	// element lasts from now to Until.
	Now time.Time
}

// Retries is an action's own retry count: 0 the Executor's default, -1
// none.
type Retries int

// RetryCount is what the Executor asks; -1 means its default.
func (r Retries) RetryCount() int {
	switch {
	case r == 0:
		return -1
	case r < 0:
		return 0
	}
	return int(r)
}

// Setupper is an action with something to create before it is used (a
// firewall table), and to remove with `run --cleanup`. Setup keeps what
// is there: the blocks it holds survive a restart and a reload.
type Setupper interface {
	Setup(ctx context.Context) error
	Cleanup(ctx context.Context) error
}

// Reconciler is an action that can tell what it holds — a firewall set,
// a map — and so can be made to hold exactly the blocks in force, changing
// only what differs: at start and reload, a block that is still there is
// not applied again, one the firewall lost (a reboot) is, and one that
// outlived its block is removed.
type Reconciler interface {
	Reconcile(ctx context.Context, want []Detection) error
}

// Action acts on detections.
type Action interface {
	Name() string
	// Run applies the action for a block, or lifts it for an unblock.
	Run(ctx context.Context, d Detection) error
	// External reports whether the action changes something outside
	// bombwatch (a firewall, a map, a script's effects). `replay` without
	// --act reports such actions instead of running them.
	External() bool
}

// Enforcer is an action that blocks a key in a firewall or an MTA map,
// as opposed to one that reports it (log, script, mail). A rule that
// enforces on clients gives such actions its block's client addresses
// instead of its key.
type Enforcer interface{ Enforces() bool }

// Enforces reports whether a is an Enforcer.
func Enforces(a Action) bool {
	e, ok := a.(Enforcer)
	return ok && e.Enforces()
}

// Statuses, as recorded on blocks (see package state).
const (
	StatusApplied = "applied"
	StatusFailed  = "failed"
	StatusPending = "pending"
	StatusDryRun  = "dry_run"
)

// FormatNumber writes a measure the way detections show it: integers
// without a fraction.
func FormatNumber(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// Executor runs the actions of detections: the log action at once, in
// order, and external ones in the background, at most Concurrency at a
// time. Dispatch never waits for them: a slow hook never stalls the reading
// of logs. What waits is queued, bounded by Queue; the actions of one key
// run in the order dispatched (a block before its unblock), and an action
// that can apply several detections at once (a Batcher: a map, nft) is
// handed all of its waiting ones together.
type Executor struct {
	Log *slog.Logger
	// Act runs external actions; without it they are recorded as dry_run.
	Act bool
	// Record, when set, is told each action's outcome.
	Record func(blockID int64, action, status string)
	// Concurrency bounds external actions running at once (default 4).
	Concurrency int
	// Queue bounds the external actions waiting to run (default 10000);
	// beyond it they are dropped, logged and told to Dropped.
	Queue int
	// Failed, when set, is told each action that failed, and why.
	Failed func(action string, err error)
	// Dropped, when set, is told the name of each action dropped.
	Dropped func(action string)
	// Retries is how many times a failing external action is tried again
	// (default 2), after Backoff (default 1s), doubling each time.
	Retries int
	Backoff time.Duration
	// Once tries each action once, whatever the retries say: a replay
	// reports a failure at its end rather than waiting on it.
	Once bool
	// Context, when done, ends the waits between retries and the running
	// of what is queued (SIGTERM): what did not run is applied again at
	// the next start, from the blocks in force. Nil never ends.
	Context context.Context

	mu      sync.Mutex
	queues  map[queueKey][]job // waiting, in order, by action and key
	ready   []queueKey         // keys with jobs waiting and none running
	waiting int
	workers int
	running map[Action]int // by action, for those with a Cap
	wg      sync.WaitGroup
}

// Capped is an action that may run at most Cap() at once (a script's
// `concurrency`): the Executor holds the rest in its queue rather than
// a worker waiting for it.
type Capped interface{ Cap() int }

// mayRun reports whether one more run of a may start.
func (x *Executor) mayRun(a Action) bool {
	c, ok := a.(Capped)
	return !ok || c.Cap() <= 0 || x.running[a] < c.Cap()
}

type queueKey struct {
	action Action
	key    string
}

type job struct {
	d Detection
	a Action
}

// Batcher is an action that applies several detections at once: one map
// rewrite and one postmap, one nft transaction. It returns an error per
// detection.
type Batcher interface {
	RunBatch(ctx context.Context, ds []Detection) []error
}

// batchMax bounds the detections handed to a Batcher at once.
const batchMax = 1000

// Dispatch runs the actions for d. It returns whether the external actions
// are executed (false when they are only reported).
func (x *Executor) Dispatch(d Detection, acts []Action) bool {
	for _, a := range acts {
		switch {
		case !a.External():
			x.finish(d, a, a.Run(context.Background(), d))
		case !x.Act || isDryRun(a):
			x.record(d, a.Name(), StatusDryRun)
		default:
			x.enqueue(job{d, a})
		}
	}
	return x.Act
}

func (x *Executor) enqueue(j job) {
	x.mu.Lock()
	defer x.mu.Unlock()
	limit := x.Queue
	if limit <= 0 {
		limit = 10000
	}
	if x.waiting >= limit {
		x.logger().Error("action dropped: too many waiting", "action", j.a.Name(), "event", j.d.Event, "key", j.d.Key, "waiting", x.waiting)
		x.record(j.d, j.a.Name(), StatusFailed)
		if x.Dropped != nil {
			x.Dropped(j.a.Name())
		}
		return
	}
	if x.queues == nil {
		x.queues = map[queueKey][]job{}
	}
	k := queueKey{j.a, j.d.Key}
	q, known := x.queues[k]
	x.queues[k] = append(q, j)
	if !known {
		x.ready = append(x.ready, k) // else it is waiting or running already
	}
	x.waiting++
	n := x.Concurrency
	if n <= 0 {
		n = 4
	}
	if x.workers < n {
		x.workers++
		x.wg.Add(1)
		go x.work()
	}
}

func (x *Executor) ctx() context.Context {
	if x.Context != nil {
		return x.Context
	}
	return context.Background()
}

// work runs waiting actions until none is left (or the context is done).
func (x *Executor) work() {
	defer x.wg.Done()
	for {
		x.mu.Lock()
		if x.ctx().Err() != nil && x.waiting > 0 {
			x.logger().Warn("stopping with actions not run: blocks in force are applied again at the next start", "waiting", x.waiting)
			for k, q := range x.queues {
				if !slices.Contains(x.ready, k) {
					x.queues[k] = q[:1] // running: its own worker ends it
				} else {
					delete(x.queues, k)
				}
			}
			x.ready, x.waiting = nil, len(x.queues)
		}
		// The first ready key whose action may run one more, and — for a
		// Batcher — every other ready key of the same action: one write
		// for a burst of blocks.
		at := slices.IndexFunc(x.ready, func(k queueKey) bool { return x.mayRun(k.action) })
		if at < 0 {
			x.workers--
			x.mu.Unlock()
			return // a worker still running will take what is left
		}
		first := x.ready[at]
		keys := []queueKey{first}
		_, batches := first.action.(Batcher)
		rest := slices.Clone(x.ready[:at])
		for _, k := range x.ready[at+1:] {
			if batches && k.action == first.action && len(keys) < batchMax {
				keys = append(keys, k)
			} else {
				rest = append(rest, k)
			}
		}
		x.ready = rest
		if x.running == nil {
			x.running = map[Action]int{}
		}
		x.running[first.action]++
		jobs := make([]job, len(keys))
		for i, k := range keys {
			jobs[i] = x.queues[k][0]
		}
		x.mu.Unlock()

		if len(jobs) == 1 {
			x.finish(jobs[0].d, jobs[0].a, x.retry(jobs[0].a, jobs[0].d))
		} else {
			x.runBatch(first.action.(Batcher), jobs)
		}

		x.mu.Lock()
		x.running[first.action]--
		for _, k := range keys {
			if q := x.queues[k][1:]; len(q) > 0 {
				x.queues[k] = q
				x.ready = append(x.ready, k) // its next, in order
			} else {
				delete(x.queues, k)
			}
			x.waiting--
		}
		x.mu.Unlock()
	}
}

// runBatch applies jobs of one action together; those that fail are tried
// again one by one, as a single job is.
func (x *Executor) runBatch(b Batcher, jobs []job) {
	ds := make([]Detection, len(jobs))
	for i, j := range jobs {
		ds[i] = j.d
	}
	errs := b.RunBatch(context.Background(), ds)
	var refused *Refusal
	for i, j := range jobs {
		err := errs[i]
		if err != nil && !errors.As(err, &refused) {
			err = x.retry(j.a, j.d)
		}
		x.finish(j.d, j.a, err)
	}
}

// retry runs an external action until it succeeds or its retries are
// spent, waiting longer each time.
func (x *Executor) retry(a Action, d Detection) error {
	retries, wait := x.Retries, x.Backoff
	if retries == 0 {
		retries = 2
	}
	if r, ok := a.(interface{ RetryCount() int }); ok && r.RetryCount() >= 0 {
		retries = r.RetryCount()
	}
	if wait <= 0 {
		wait = time.Second
	}
	if x.Once {
		retries = 0
	}
	err := a.Run(context.Background(), d)
	var refused *Refusal
	for i := 0; err != nil && !errors.As(err, &refused) && i < retries; i++ {
		x.logger().Warn("action failed; trying again", "action", a.Name(), "event", d.Event, "key", d.Key, "in", wait.String(), "err", err)
		select {
		case <-time.After(wait):
		case <-x.ctx().Done():
			return err
		}
		wait *= 2
		err = a.Run(context.Background(), d)
	}
	return err
}

// WaitFor waits for the external actions under way, at most d; it
// reports whether they all ended. A hook that takes longer goes on, its
// outcome unrecorded: the block is applied again at the next start.
func (x *Executor) WaitFor(d time.Duration) bool {
	done := make(chan struct{})
	go func() { x.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Wait waits for the external actions under way.
func (x *Executor) Wait() { x.wg.Wait() }

func (x *Executor) finish(d Detection, a Action, err error) {
	if err != nil {
		x.logger().Error("action failed", "action", a.Name(), "event", d.Event, "rule", d.Rule, "key", d.Key, "err", err)
		x.record(d, a.Name(), StatusFailed)
		if x.Failed != nil {
			x.Failed(a.Name(), err)
		}
		return
	}
	x.record(d, a.Name(), StatusApplied)
}

// record keeps the outcome of applying a block only: lifting it does not
// change what the block did.
func (x *Executor) record(d Detection, action, status string) {
	if x.Record != nil && d.Event == "block" {
		x.Record(d.BlockID, action, status)
	}
}

func (x *Executor) logger() *slog.Logger {
	if x.Log == nil {
		return slog.Default()
	}
	return x.Log
}

type dryRunner interface{ DryRun() bool }

// IsDryRun reports whether an action is configured never to run.
func IsDryRun(a Action) bool { return isDryRun(a) }

func isDryRun(a Action) bool {
	d, ok := a.(dryRunner)
	return ok && d.DryRun()
}

// Log is the action that always exists: a structured log line per block
// and unblock.
type Log struct {
	ActionName string // "log" when empty
	Logger     *slog.Logger
}

func (l *Log) Name() string {
	if l.ActionName == "" {
		return "log"
	}
	return l.ActionName
}
func (l *Log) External() bool { return false }

func (l *Log) Run(_ context.Context, d Detection) error {
	logger := l.Logger
	if logger == nil {
		logger = slog.Default()
	}
	attrs := []any{"rule", d.Rule, "key_type", d.KeyType, "key", d.Key,
		"value", d.Value, "limit", d.Limit, "window", d.Window.String(), "time", d.Time.UTC().Format(time.RFC3339Nano)}
	if !d.Until.IsZero() {
		attrs = append(attrs, "until", d.Until.UTC().Format(time.RFC3339))
	}
	if d.Reason != "" {
		attrs = append(attrs, "reason", d.Reason)
	}
	logger.Info(d.Event, attrs...)
	return nil
}
