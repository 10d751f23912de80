// Package actions does something about a detection: logs it, runs a hook,
// and (later) blocks the key in a firewall or an MTA map, and undoes it when
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
// firewall table), and to remove with `run --cleanup`.
type Setupper interface {
	Setup(ctx context.Context) error
	Cleanup(ctx context.Context) error
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
// time, so that a slow hook never stalls the reading of logs.
type Executor struct {
	Log *slog.Logger
	// Act runs external actions; without it they are recorded as dry_run.
	Act bool
	// Record, when set, is told each action's outcome.
	Record func(blockID int64, action, status string)
	// Concurrency bounds external actions running at once (default 4).
	Concurrency int
	// Failed, when set, is told the name of each action that failed.
	Failed func(action string)
	// Retries is how many times a failing external action is tried again
	// (default 2), after Backoff (default 1s), doubling each time.
	Retries int
	Backoff time.Duration

	once sync.Once
	sem  chan struct{}
	wg   sync.WaitGroup
}

// Dispatch runs the actions for d. It returns whether the external actions
// are executed (false when they are only reported).
func (x *Executor) Dispatch(d Detection, acts []Action) bool {
	x.once.Do(func() {
		n := x.Concurrency
		if n <= 0 {
			n = 4
		}
		x.sem = make(chan struct{}, n)
	})
	for _, a := range acts {
		switch {
		case !a.External():
			x.finish(d, a, a.Run(context.Background(), d))
		case !x.Act || isDryRun(a):
			x.record(d, a.Name(), StatusDryRun)
		default:
			x.wg.Add(1)
			x.sem <- struct{}{}
			go func() {
				defer func() { <-x.sem; x.wg.Done() }()
				x.finish(d, a, x.retry(a, d))
			}()
		}
	}
	return x.Act
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
	err := a.Run(context.Background(), d)
	var refused *Refusal
	for i := 0; err != nil && !errors.As(err, &refused) && i < retries; i++ {
		x.logger().Warn("action failed; trying again", "action", a.Name(), "event", d.Event, "key", d.Key, "in", wait.String(), "err", err)
		time.Sleep(wait)
		wait *= 2
		err = a.Run(context.Background(), d)
	}
	return err
}

// Wait waits for the external actions under way.
func (x *Executor) Wait() { x.wg.Wait() }

func (x *Executor) finish(d Detection, a Action, err error) {
	if err != nil {
		x.logger().Error("action failed", "action", a.Name(), "event", d.Event, "rule", d.Rule, "key", d.Key, "err", err)
		x.record(d, a.Name(), StatusFailed)
		if x.Failed != nil {
			x.Failed(a.Name())
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
