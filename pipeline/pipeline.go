// Package pipeline is bombwatch's whole flow, in one direction:
//
//	input → parser → rule (event → key) → window → store → action
//
// Sources read lines and parse them into events; the pipeline runs each
// event through every rule, whose window says whether the key is over its
// limit; a key over its limit is blocked, the block is saved, and the rule's
// actions run. Blocks are lifted when the pipeline's clock — the newest
// event time, never the wall clock — passes their end, so a replay decides
// exactly what the live daemon did.
package pipeline

import (
	"container/heap"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/bombwatch/bombwatch/actions"
	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/state"
)

// Options are what the pipeline writes to and acts with.
type Options struct {
	// Store keeps the state; nil keeps it in memory only.
	Store state.Store
	// Executor runs actions; nil runs the log action only.
	Executor *actions.Executor
	// OnDetection, when set, receives every block and unblock.
	OnDetection func(Detection)
	Logger      *slog.Logger
	// CommitEvery is how many events a batch holds at most (default 16384).
	CommitEvery int
}

// Pipeline runs events through rules. It is used from one goroutine.
type Pipeline struct {
	opts   Options
	rules  []*rule
	byName map[string]*rule
	ignore *ignoreList
	log    *slog.Logger

	clock     time.Time // newest event time seen
	positions map[string]state.Position
	expiry    blockHeap // blocks with an end, soonest first
	nextID    int64     // the next block's ID
	keyBuf    []byte    // the current event's key, reused
	batch     state.Batch
	events    int // since the last commit

	// unsaved holds the blocks started since the last commit: action
	// outcomes reported meanwhile are written on them, not to the store.
	mu      sync.Mutex
	unsaved map[int64]*state.Block

	Stats Stats
}

// Stats counts what the pipeline saw and did.
type Stats struct {
	Events   [8]int64 // by parsers.Kind
	Ignored  int64
	Blocks   int64
	Unblocks int64
}

// Process reads the sources to their ends, merged by event time, and runs
// every event through the rules; the state is committed every CommitEvery
// events and at the end.
func (p *Pipeline) Process(srcs []*Source) error {
	for {
		src := nextSource(srcs) // input → parser
		if src == nil {
			break
		}
		p.Event(src.pop()) // rule → window → block → action
		if p.events++; p.events >= p.opts.CommitEvery {
			if err := p.Commit(srcs); err != nil { // store
				return err
			}
		}
	}
	return p.Commit(srcs)
}

// Event runs one event through every rule.
func (p *Pipeline) Event(e *parsers.Event) {
	p.Stats.Events[e.Kind&7]++
	p.Advance(e.Time)
	if p.ignore.event(e) {
		p.Stats.Ignored++
		return
	}
	for _, r := range p.rules {
		if !r.kinds[e.Kind&7] {
			continue
		}
		key, ok := r.appendKey(p.keyBuf[:0], e)
		p.keyBuf = key
		if !ok {
			continue
		}
		n := r.counter.AddBytes(key, e.Time)
		if n > r.limit {
			if _, blocked := r.blocked[string(key)]; !blocked {
				p.block(r, string(key), e, n)
			}
		}
	}
}

// Advance moves the clock to t, if later, and lifts the blocks that ended
// by then, each at its own end time.
func (p *Pipeline) Advance(t time.Time) {
	if !t.After(p.clock) {
		return
	}
	p.clock = t
	for len(p.expiry) > 0 && !p.expiry[0].Until.After(t) {
		b := heap.Pop(&p.expiry).(*state.Block)
		p.lift(b, b.Until, "expired")
	}
	for _, r := range p.rules {
		if t.Sub(r.swept) >= r.per {
			r.counter.Expire(t)
			r.swept = t
		}
	}
}

// block starts a block of key by rule r, because event e made its measure n.
func (p *Pipeline) block(r *rule, key string, e *parsers.Event, n int) {
	b := &state.Block{
		ID: p.nextID, Rule: r.name, KeyType: r.keyType, Key: key,
		Since: e.Time, Value: float64(n), Limit: float64(r.limit), Window: r.per,
		Actions: make(map[string]string, len(r.actions)),
	}
	p.nextID++
	if r.block > 0 {
		b.Until = e.Time.Add(r.block)
		heap.Push(&p.expiry, b)
	}
	for _, a := range r.actions {
		b.Actions[a.Name()] = state.Pending
	}
	r.blocked[key] = b
	p.Stats.Blocks++
	p.mu.Lock()
	p.unsaved[b.ID] = b
	p.mu.Unlock()
	p.act("block", b, b.Since, "", r.actions, e)
}

// lift ends a block.
func (p *Pipeline) lift(b *state.Block, at time.Time, reason string) {
	b.Ended, b.EndReason = at, reason
	p.batch.Ends = append(p.batch.Ends, state.End{ID: b.ID, Time: at, Reason: reason})
	p.Stats.Unblocks++
	acts := []actions.Action{p.logAction()}
	if r := p.byName[b.Rule]; r != nil {
		if r.blocked[b.Key] == b {
			delete(r.blocked, b.Key)
		}
		acts = r.actions
	}
	p.act("unblock", b, at, reason, acts, nil)
}

// act runs the actions of a block or unblock and reports the detection.
func (p *Pipeline) act(event string, b *state.Block, at time.Time, reason string, acts []actions.Action, e *parsers.Event) {
	d := actions.Detection{Event: event, Time: at, BlockID: b.ID, Rule: b.Rule, KeyType: b.KeyType, Key: b.Key,
		Value: b.Value, Limit: b.Limit, Window: b.Window, Until: b.Until}
	executed := true
	if p.opts.Executor != nil {
		external := slices.ContainsFunc(acts, actions.Action.External)
		executed = p.opts.Executor.Dispatch(d, acts) || !external
	} else {
		p.logAction().Run(context.Background(), d)
	}
	if p.opts.OnDetection != nil {
		p.opts.OnDetection(newDetection(d, acts, executed, reason, e))
	}
}

// record is the Executor's report of an action's outcome.
func (p *Pipeline) record(id int64, action, status string) {
	p.mu.Lock()
	if b, ok := p.unsaved[id]; ok {
		b.Actions[action] = status
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	if p.opts.Store != nil {
		if err := p.opts.Store.SetActionStatus(id, action, status); err != nil {
			p.log.Error("record action status", "block", id, "action", action, "err", err)
		}
	}
}

// Commit saves, in one transaction, the windows changed, the blocks started
// and lifted, and how far each source has been read.
func (p *Pipeline) Commit(srcs []*Source) error {
	p.events = 0
	if p.opts.Store == nil {
		for _, r := range p.rules {
			r.counter.Flush(func(string, []int64) {})
		}
		clear(p.unsaved)
		p.batch.Reset()
		return nil
	}
	for _, r := range p.rules {
		r.counter.Flush(func(key string, times []int64) {
			p.batch.Windows = append(p.batch.Windows, state.Window{Rule: r.name, Key: key, Times: slices.Clone(times)})
		})
	}
	for _, s := range srcs {
		if pos, ok := s.position(); ok {
			p.batch.Positions = append(p.batch.Positions, pos)
		}
	}
	p.batch.Clock = p.clock
	// Held through the commit: an action finishing meanwhile must find its
	// block either here or in the store.
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.unsaved {
		p.batch.Blocks = append(p.batch.Blocks, *b)
	}
	slices.SortFunc(p.batch.Blocks, func(a, b state.Block) int { return int(a.ID - b.ID) })
	err := p.opts.Store.Commit(&p.batch)
	clear(p.unsaved)
	p.batch.Reset()
	return err
}

// Clock is the pipeline's time: the newest event time seen.
func (p *Pipeline) Clock() time.Time { return p.clock }

// Active returns the blocks in force, oldest first.
func (p *Pipeline) Active() []state.Block {
	var out []state.Block
	for _, r := range p.rules {
		for _, b := range r.blocked {
			out = append(out, *b)
		}
	}
	for _, b := range p.expiry {
		if p.byName[b.Rule] == nil {
			out = append(out, *b)
		}
	}
	slices.SortFunc(out, func(a, b state.Block) int { return int(a.ID - b.ID) })
	return out
}

// blockHeap orders blocks by their end.
type blockHeap []*state.Block

func (h blockHeap) Len() int { return len(h) }
func (h blockHeap) Less(i, j int) bool {
	if h[i].Until.Equal(h[j].Until) {
		return h[i].ID < h[j].ID
	}
	return h[i].Until.Before(h[j].Until)
}
func (h blockHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *blockHeap) Push(x any)   { *h = append(*h, x.(*state.Block)) }
func (h *blockHeap) Pop() any {
	old := *h
	b := old[len(old)-1]
	*h = old[:len(old)-1]
	return b
}
