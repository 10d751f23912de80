// Package pipeline is bombwatch's whole flow, in one direction:
//
//	input → parser → rule (event → key) → window → store → action
//
// Sources (package input) read lines and parse them into events, merged by
// time; the pipeline runs each event through every rule, whose window says
// whether the key is over its limit; a key over its limit is blocked, the block is saved, and the rule's
// actions run. Blocks are lifted when the pipeline's clock — the newest
// event time, never the wall clock — passes their end, so a replay decides
// exactly what the live daemon did.
package pipeline

import (
	"cmp"
	"container/heap"
	"context"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/bombwatch/bombwatch/actions"
	"github.com/bombwatch/bombwatch/input"
	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/state"
	"github.com/bombwatch/bombwatch/window"
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
	// CommitEvery is how many events a batch holds at most (default
	// 16384: a hot key's window is saved once a batch, so fewer batches
	// save less; replays of 1M lines were 9-13% faster than with 4096,
	// 4-9% slower with 32768 and 30% with 65536).
	CommitEvery int
	// Retention is how long the stats reports read are kept (0: forever).
	Retention time.Duration
	// MaxKeys caps the keys the rules' windows hold together (0: the
	// default, DefaultMaxKeys; see evict).
	MaxKeys int
	// DeferWindows leaves the saved windows to RestoreWindows: New loads
	// the blocks in force, offenses and positions only.
	DeferWindows bool
	// Host is this host's name: a block's Host when its log line names
	// none.
	Host string
	// AloneIDs is how many block IDs a store several hosts share sets
	// aside for this pipeline, at start and again as they are used, for
	// the blocks it decides while the store cannot be reached: no other
	// host can have them. With none (replay), such a block takes the next
	// ID past this pipeline's, which another host may hold too.
	AloneIDs int
}

// DefaultMaxKeys is the cap on keys when none is set: with what a key of
// a count window costs (90-100 bytes), what a full batch encodes and what
// the collector leaves, about 1 GB (run and replay set the heap's soft
// limit from it).
const DefaultMaxKeys = 2_000_000

// Pipeline runs events through rules. It is used from one goroutine.
type Pipeline struct {
	opts   Options
	rules  []*rule
	byKind [8][]*rule // the rules that count each kind of event, in config order
	keys   []eventKey // the current event's keys, by key spec
	epoch  uint64     // counts events: a key made at another is stale
	byName map[string]*rule
	named  map[string]actions.Action // every action of the config
	ignore *ignoreList
	log    *slog.Logger

	clock     time.Time // newest event time seen
	nextSweep time.Time // when a rule's idle keys are next due to be dropped
	positions map[string]state.Position
	expiry    endHeap // when blocks are due to end, soonest first
	inForce   map[int64]*active
	offenses  map[offenseKey]state.Offense
	holds     map[holdKey]*holding // what the blocks in force hold
	ids       [2]int64             // block IDs reserved in the store: the next, and the end
	aloneIDs  [2]int64             // those set aside for deciding alone (Options.AloneIDs)
	batch     *state.Batch
	spare     *state.Batch // the other batch, being committed or free
	committed chan error   // the commit under way, if any
	failed    bool         // the spare batch failed to commit: save it first
	// savedPositions are those of the last batch saved (SavedPositions).
	savedPositions map[string]state.Position
	lastErr        error // why, while failed
	commits        int64 // commits started, numbering them
	committing     int64 // the number of the one under way
	// unreachableAfter is the number of the last commit started when
	// unreachable was found.
	unreachableAfter int64
	// unreachable: a shared store failed to answer a claim; it is not
	// asked again until a commit succeeds.
	unreachable bool
	events      int // since the last commit
	// records counts the windows the store keeps: those saved since the
	// last full batch, or read at the start. Past one a key held (see
	// savedKeys), the rest are older windows of a key, or of a key
	// forgotten since (see commit).
	records int
	// windowsDue: the saved windows are yet to be loaded (DeferWindows).
	windowsDue bool
	// parts are the saved windows loaded but yet to be restored.
	parts         savedParts
	windowsByName map[string]window.Saved
	// resets are the keys forgotten before the windows were read (a
	// block lifted by the clock as the daemon starts): forgotten once
	// they are.
	resets []ruleKey
	pruned time.Time // when stats were last pruned

	// files name the log files windows' tags refer to (see tag): IDs
	// from 1, in the order first seen over the store's life.
	files    []string
	fileIDs  map[string]uint64
	lastFile string // the last event's, and its ID: most events come
	lastFID  uint64 // from the file the one before came from

	// unsaved holds the blocks started since the last commit: action
	// outcomes reported meanwhile are written on them, not to the store.
	// inFlight holds those of the commit under way: an outcome reported
	// before it lands is written on the block, which goes back to unsaved
	// (the batch has a copy, without it) to be saved again — never to the
	// store on its own, which would have no block to write it on yet.
	mu       sync.Mutex
	unsaved  map[int64]*state.Block
	inFlight map[int64]*state.Block
	// outcomes are those reported on saved blocks, for Active: the
	// store has them, the blocks in memory not.
	outcomes map[int64]map[string]string

	Stats Stats
}

// active is a block in force.
type active struct {
	state.Block
	rule *rule     // nil for a rule no longer in the config
	end  time.Time // when it is due to end: its Until, or sooner by release
	// members is Block.Members as a set, for the rules that enforce on
	// clients.
	members map[netip.Addr]bool
}

// maxMembers bounds the client addresses one block is enforced on: a
// forged sender sent from a botnet adds one per bot.
const maxMembers = 4096

// addMember adds a client address to the block's enforcement, and reports
// whether it is new.
func (a *active) addMember(ip netip.Addr) bool {
	if !a.holdMember(ip) {
		return false
	}
	a.Members = append(a.Members, ip.String())
	return true
}

// holdMember adds ip to the addresses the block enforces, and reports
// whether it is new; Members is left as it is.
func (a *active) holdMember(ip netip.Addr) bool {
	if !ip.IsValid() || ip.IsLoopback() || ip.IsUnspecified() || a.members[ip] || len(a.members) >= maxMembers {
		return false
	}
	if a.members == nil {
		a.members = map[netip.Addr]bool{}
	}
	a.members[ip] = true
	return true
}

// holdMembers enforces the addresses of a saved block's Members: a
// block of a network holds up to maxMembers, and looking each up in the
// list as it was added again was 8 million comparisons for a full one.
func (a *active) holdMembers() {
	for _, m := range a.Members {
		if ip, err := netip.ParseAddr(m); err == nil {
			a.holdMember(ip)
		}
	}
}

type offenseKey struct{ rule, key string }

// Stats counts what the pipeline saw and did.
type Stats struct {
	Events   [8]int64 // by parsers.Kind
	Ignored  int64
	Blocks   int64
	Unblocks int64
	// Evicted counts the keys forgotten because the rules held more than
	// MaxKeys (see evict).
	Evicted int64
}

// Process runs every event of the merged sources through the rules until
// they are all read; the state is committed every CommitEvery events and at
// the end. Followed sources are never all read: the daemon runs its own
// loop, Next by Next, between its other work.
func (p *Pipeline) Process(m *input.Merger) error {
	for {
		e, wait, done := m.Next() // input → parser, merged by time
		switch {
		case done:
			return p.Commit(m)
		case e == nil && wait > 0:
			time.Sleep(wait)
			continue
		case e == nil:
			<-m.Wake()
			continue
		}
		p.Event(e) // rule → window → block → action
		if p.events++; p.events >= p.opts.CommitEvery {
			if err := p.commit(m, false); err != nil { // store
				return err
			}
		}
	}
}

// Event runs one event through every rule.
func (p *Pipeline) Event(e *parsers.Event) {
	p.Stats.Events[e.Kind&7]++
	p.Advance(e.Time)
	if p.ignore.event(e) {
		p.Stats.Ignored++
		return
	}
	p.epoch++
	for _, r := range p.byKind[e.Kind&7] {
		key, ok := p.key(r, e)
		if !ok {
			continue
		}
		if r.burst != nil {
			p.burst(r, key, e)
		} else {
			p.measure(r, key, e)
		}
	}
	// Keys are evicted with each batch, and between two when a flood
	// takes them a sixteenth past the cap: a daemon catching up reads
	// hundreds of thousands of lines between two saves.
	if p.epoch%evictEvery == 0 && p.Keys() > p.opts.MaxKeys+p.opts.MaxKeys/16 {
		p.evict()
	}
}

// evictEvery is how many events run between two looks at the keys held.
const evictEvery = 1024

// eventKey is an event's key of one key spec, made once for all the rules
// that share the spec.
type eventKey struct {
	epoch uint64
	key   []byte
	ok    bool
}

// key is the event's key for rule r, and whether it has one that counts.
func (p *Pipeline) key(r *rule, e *parsers.Event) ([]byte, bool) {
	k := &p.keys[r.spec]
	if k.epoch != p.epoch {
		k.epoch = p.epoch
		k.key, k.ok = r.appendKey(k.key[:0], e)
		k.ok = k.ok && !p.ignore.key(r.keyType, k.key)
		if k.ok && p.parts.due != 0 {
			p.need(k.key)
		}
	}
	return k.key, k.ok
}

// lineBits is how many bits of a tag are the line number.
const lineBits = 40

// tag is where e was logged, for the windows to keep with what they count
// (a block's evidence): the file's ID and the line. 0 when unknown.
func (p *Pipeline) tag(e *parsers.Event) uint64 {
	if e.File == "" || e.Line <= 0 || e.Line >= 1<<lineBits {
		return 0
	}
	if e.File != p.lastFile {
		id, ok := p.fileIDs[e.File]
		if !ok {
			if p.fileIDs == nil {
				p.fileIDs = map[string]uint64{}
			}
			p.files = append(p.files, e.File)
			id = uint64(len(p.files))
			p.fileIDs[e.File] = id
			p.batch.Files = append(p.batch.Files, e.File)
		}
		p.lastFile, p.lastFID = e.File, id
	}
	return p.lastFID<<lineBits | uint64(e.Line)
}

// maxEvidence bounds a block's evidence where limit+1 would be more: a
// bytes limit, or a burst score's events (the newest add the most).
const (
	maxEvidence      = 1000
	maxBurstEvidence = 100
)

// evidence is what a block keeps of the entries its measure counted: the
// newest n, where each was logged.
func (p *Pipeline) evidence(entries []window.Entry, n int) []state.Evidence {
	if len(entries) > n {
		entries = entries[len(entries)-n:]
	}
	out := make([]state.Evidence, 0, len(entries))
	for _, en := range entries {
		ev := state.Evidence{Time: en.Time, Amount: en.Amount, Date: en.Date}
		if id := en.Tag >> lineBits; id > 0 && id <= uint64(len(p.files)) {
			ev.File, ev.Line = p.files[id-1], int64(en.Tag&(1<<lineBits-1))
		}
		out = append(out, ev)
	}
	return out
}

// measure adds the event to the rule's windows, and starts, keeps or lifts
// the key's block.
func (p *Pipeline) measure(r *rule, key []byte, e *parsers.Event) {
	amount, ok := r.amount(e)
	if !ok {
		return
	}
	if r.rate != nil {
		r.rate.Add(key, e.Time, amount)
	}
	if r.seenFrom != nil {
		r.seenFrom.add(key, e.ClientIP, e.Time)
	}
	crossed := -1
	var value, limit int64
	r.values = r.values[:0] // by window, for adapt's history
	tag := p.tag(e)
	for i, w := range r.windows {
		l := r.limit(i, key, e.Time)
		c := r.counters[i]
		v := c.value
		if !c.shared || c.epoch != p.epoch {
			keep := l
			if c.shared {
				keep = w.Limit() // the highest limit of the rules sharing it
			}
			v = w.AddUpTo(key, e.Time, amount, keep)
			w.Tag(tag)
			c.epoch, c.value = p.epoch, v
		}
		r.values = append(r.values, v)
		if v > l && crossed < 0 {
			crossed, value, limit = i, v, l
		}
	}
	a := r.blocked[string(key)]
	if r.adapt != nil && a == nil && crossed < 0 {
		// A key's normal is what it sent unblocked and under its limit.
		for i, p := range r.peaks {
			// A peak that factor does not lift over the limit changes
			// nothing: most keys never cost a peak.
			if r.adapt.Factor*float64(r.values[i]) > float64(r.bases[i]) {
				p.Note(key, e.Time, r.values[i])
			}
		}
	}
	if a != nil && r.onClients {
		p.enforceOn(a, e)
	}
	switch {
	case a != nil && r.forgive > 0 && r.windows[0].Value(a.Key, e.Time) >= 0:
		// The behind counter: the event that brings it back to 0 passes.
		p.lift(a, e.Time, "forgiven")
	case a != nil && r.release:
		p.scheduleRelease(a)
	case a == nil && crossed >= 0:
		w := r.windows[crossed]
		a = p.block(r, string(key), e, float64(value), float64(limit), w.Per(),
			p.evidence(w.Entries(string(key), e.Time), int(min(limit+1, maxEvidence))))
		if r.forgive > 0 {
			w.Forgive(a.Key, r.forgive, e.Time)
		}
		if r.release {
			p.scheduleRelease(a)
		}
	}
}

// burst adds the event to the rule's burst score: FML's verdict starts a
// block, whose value is the score that decided and whose limit the
// threshold it passed.
func (p *Pipeline) burst(r *rule, key []byte, e *parsers.Event) {
	et, ed, hasDate := r.burst.Add(key, e.Time, e.Date)
	r.burst.Tag(p.tag(e))
	if a := r.blocked[string(key)]; a != nil {
		if r.onClients {
			p.enforceOn(a, e)
		}
		return
	}
	if !window.IsBomb(et, ed, hasDate, r.soft, r.hard) {
		return
	}
	value, limit := et, r.hard
	switch {
	case hasDate && ed > r.hard:
		value = ed
	case et > r.hard:
	default: // E{d} above soft and above E{t}
		value, limit = ed, r.soft
	}
	p.block(r, string(key), e, value, limit, r.burst.Expire(), p.evidence(r.burst.Entries(string(key), e.Time), maxBurstEvidence))
}

// Advance moves the clock to t, if later, and lifts the blocks that ended
// by then, each at its own end time.
func (p *Pipeline) Advance(t time.Time) {
	if !t.After(p.clock) {
		return
	}
	p.clock = t
	for len(p.expiry) > 0 && !p.expiry[0].at.After(t) {
		d := heap.Pop(&p.expiry).(due)
		if d.a.Ended.IsZero() && d.a.end.Equal(d.at) {
			reason := "expired"
			if d.a.Until.IsZero() || d.at.Before(d.a.Until) {
				reason = "released"
			}
			p.lift(d.a, d.at, reason)
		}
	}
	if t.Before(p.nextSweep) {
		return
	}
	p.nextSweep = time.Time{}
	for _, r := range p.rules {
		if t.Sub(r.swept) >= r.longest {
			for _, nw := range r.stores {
				nw.w.Expire(t)
			}
			if r.burst != nil {
				r.burst.Expired(t)
			}
			if r.seenFrom != nil {
				r.seenFrom.expire(t.Add(-r.longest))
			}
			r.swept = t
			p.forgetOffenses(r, t)
		}
		if next := r.swept.Add(r.longest); p.nextSweep.IsZero() || next.Before(p.nextSweep) {
			p.nextSweep = next
		}
	}
}

// block starts a block of key by rule r, because event e made its measure
// value.
func (p *Pipeline) block(r *rule, key string, e *parsers.Event, value, limit float64, per time.Duration, evidence []state.Evidence) *active {
	id := p.blockID(r, key, e.Time)
	if a := p.inForce[id]; a != nil {
		return a // another host that shares the store decided it first, and it was adopted here
	}
	a := &active{rule: r, Block: state.Block{
		ID: id, Rule: r.name, KeyType: r.keyType, Key: key, Host: cmp.Or(e.Host, p.opts.Host),
		Since: e.Time, Value: value, Limit: limit, Window: per,
		Actions: make(map[string]string, len(r.actions)), File: e.File, Line: e.Line,
		Evidence: evidence,
	}}
	if d := p.blockLength(r, key, e.Time); d > 0 {
		a.Until = e.Time.Add(d)
	}
	p.schedule(a, a.Until)
	for _, act := range r.actions {
		a.Actions[act.Name()] = state.Pending
	}
	if r.onClients {
		if r.seenFrom != nil {
			// The network's members that sent within the window.
			for _, ip := range r.seenFrom.since(key, e.Time.Add(-per)) {
				a.addMember(ip)
			}
		}
		a.addMember(e.ClientIP)
	}
	r.blocked[key] = a
	p.inForce[a.ID] = a
	p.Stats.Blocks++
	p.mu.Lock()
	p.unsaved[a.ID] = &a.Block
	p.mu.Unlock()
	p.act("block", a, a.Since, "", r.actions, e)
	return a
}

// idBatch is how many block IDs are reserved at a time: one write to the
// store per idBatch blocks.
const idBatch = 64

// blockID is the ID of the block of key by r from since: in a store
// several hosts share, the one every host that decides it gets, so that
// it is one block wherever it was seen; else the next of this pipeline's.
func (p *Pipeline) blockID(r *rule, key string, since time.Time) int64 {
	c, shared := p.opts.Store.(claimer)
	if !shared {
		id, _ := p.newID(true)
		return id
	}
	// While the store cannot be reached, it is not asked — each question
	// would wait for its timeout — and the ID is one set aside before,
	// which no other host can have. A save that failed is not enough to
	// stop asking: the store may be back before the save is tried again,
	// and another host deciding the same block meanwhile must share its ID.
	if !p.unreachable {
		if id, ok := p.newID(true); ok {
			claimed, err := c.ClaimBlock(r.name, r.keyType, key, since, id)
			if err == nil {
				if claimed != id {
					p.ids[0]-- // not used: the next block's
				}
				return claimed
			}
			p.log.Error("claim a block ID from the shared state; deciding alone", "err", err)
			p.unreachable, p.unreachableAfter = true, p.commits
			return id // reserved: this host's
		}
		p.unreachable, p.unreachableAfter = true, p.commits
	}
	if p.aloneIDs[0] < p.aloneIDs[1] {
		p.aloneIDs[0]++
		return p.aloneIDs[0] - 1
	}
	id, _ := p.newID(false)
	p.log.Error("deciding alone, and no block ID set aside is left: this block's may be another host's", "id", id, "rule", r.name, "key", key)
	return id
}

type claimer interface {
	ClaimBlock(rule, keyType, key string, since time.Time, id int64) (int64, error)
}

// newID is the next block ID, from the store's reservations; past them,
// a new range is asked for, unless ask is false. When none can be had, it
// is the next past the last range, ok is false, and the store is asked
// again the next time.
func (p *Pipeline) newID(ask bool) (id int64, ok bool) {
	if p.ids[0] < p.ids[1] {
		p.ids[0]++
		return p.ids[0] - 1, true
	}
	next := max(p.ids[1], 1)
	if p.opts.Store == nil {
		p.ids = [2]int64{next + 1, next + idBatch}
		return next, true
	}
	if ask {
		first, err := p.opts.Store.ReserveIDs(idBatch)
		if err == nil {
			first = max(first, 1)
			p.ids = [2]int64{first + 1, first + idBatch}
			return first, true
		}
		// The store cannot be written: neither can the block. Saving
		// will say what failed.
		p.log.Error("reserve block IDs", "err", err)
	}
	p.ids = [2]int64{next + 1, next + 1}
	return next, false
}

// setAsideIDs reserves Options.AloneIDs block IDs, for deciding alone,
// when fewer than half are left.
func (p *Pipeline) setAsideIDs() {
	n := int64(p.opts.AloneIDs)
	if _, shared := p.opts.Store.(claimer); !shared || n == 0 || p.aloneIDs[1]-p.aloneIDs[0] >= n/2 {
		return
	}
	first, err := p.opts.Store.ReserveIDs(n)
	if err != nil {
		p.log.Error("set aside block IDs for deciding alone", "err", err)
		return
	}
	p.aloneIDs = [2]int64{first, first + n}
}

// blockLength is the rule's block, lengthened for a repeat offender: each
// block lasts factor times the one before, at most max. The offense is
// counted here.
func (p *Pipeline) blockLength(r *rule, key string, t time.Time) time.Duration {
	if r.escalate == nil {
		return r.block
	}
	k := offenseKey{r.name, key}
	o, seen := p.offenses[k]
	if !seen || t.Sub(o.Last) >= time.Duration(r.escalate.Max) {
		o = state.Offense{Rule: r.name, Key: key}
	}
	d := float64(r.block)
	for i := 0; i < o.Count && d < float64(r.escalate.Max); i++ {
		d *= r.escalate.Factor
	}
	o.Count++
	o.Last = t
	p.offenses[k] = o
	p.batch.Offenses = append(p.batch.Offenses, o)
	return min(time.Duration(d), time.Duration(r.escalate.Max))
}

// forgetOffenses drops the offenses that lapsed: memory follows the keys
// blocked within the escalation's max.
func (p *Pipeline) forgetOffenses(r *rule, t time.Time) {
	if r.escalate == nil {
		return
	}
	for k, o := range p.offenses {
		if k.rule == r.name && t.Sub(o.Last) >= time.Duration(r.escalate.Max) {
			delete(p.offenses, k)
		}
	}
}

// schedule makes at the block's end, when it is sooner than the end it has
// (or it has none).
func (p *Pipeline) schedule(a *active, at time.Time) {
	if at.IsZero() || !a.end.IsZero() && !at.Before(a.end) {
		return
	}
	a.end = at
	heap.Push(&p.expiry, due{at: at, a: a})
}

// scheduleRelease sets a released block's end to when every window of its
// rule is back at or under its limit, if no more events come. Each event
// can only push that later: the earlier entry in the heap is then stale
// and skipped.
func (p *Pipeline) scheduleRelease(a *active) {
	var at time.Time
	windows := a.rule.windows
	if a.rule.rate != nil {
		windows = []window.Measure{a.rule.rate}
	}
	for _, w := range windows {
		if t, over := w.Below(a.Key); over && t.After(at) {
			at = t
		}
	}
	if at.IsZero() {
		at = p.clock // already back under the limit
	}
	if !a.Until.IsZero() && a.Until.Before(at) {
		at = a.Until
	}
	if !at.Equal(a.end) {
		a.end = at
		heap.Push(&p.expiry, due{at: at, a: a})
	}
}

// lift ends a block.
func (p *Pipeline) lift(a *active, at time.Time, reason string) {
	a.Ended, a.EndReason = at, reason
	p.batch.Ends = append(p.batch.Ends, state.End{ID: a.ID, Time: at, Reason: reason})
	delete(p.inForce, a.ID)
	p.Stats.Unblocks++
	if r := a.rule; r != nil {
		if r.blocked[a.Key] == a {
			delete(r.blocked, a.Key)
		}
		if r.forgive > 0 && reason == "expired" {
			// smtp-dos-detector forgets a host whose entry expired.
			p.reset(r, a.Key)
		}
	}
	p.act("unblock", a, at, reason, p.actionsOf(a), nil)
}

// act runs the actions of a block or unblock and reports the detection.
func (p *Pipeline) act(event string, a *active, at time.Time, reason string, acts []actions.Action, e *parsers.Event) {
	p.dispatch(event, a, at, reason, acts, e, true)
}

// dispatch is act; hold says whether a block counts what its actions
// hold (see hold), which a block adopted from the store did already.
func (p *Pipeline) dispatch(event string, a *active, at time.Time, reason string, acts []actions.Action, e *parsers.Event, hold bool) {
	d := actions.Detection{Event: event, Time: at, BlockID: a.ID, Rule: a.Rule, KeyType: a.KeyType, Key: a.Key,
		Value: a.Value, Limit: a.Limit, Window: a.Window, Until: a.Until, Reason: reason, Now: p.clock}
	executed := true
	if x := p.opts.Executor; x != nil {
		external := slices.ContainsFunc(acts, actions.Action.External)
		executed = x.Act || !external
		for _, act := range acts {
			if !act.External() {
				x.Dispatch(d, []actions.Action{act})
				continue
			}
			for _, t := range a.targets(act) {
				td := d
				td.KeyType, td.Key = t.keyType, t.key
				if event == "block" && hold {
					td.Until = p.hold(act, t, a.Until)
				} else if event == "block" {
					if h := p.holds[holdKey{act.Name(), t}]; h != nil {
						td.Until = h.until
					}
				} else if !p.release(act, t) {
					continue // another block in force still holds it
				}
				x.Dispatch(td, []actions.Action{act})
			}
		}
	} else {
		p.logAction().Run(context.Background(), d)
	}
	if p.opts.OnDetection != nil {
		out := newDetection(d, acts, executed, reason, e)
		out.Host = a.Host
		if a.rule != nil && a.rule.onClients {
			out.Members = slices.Clone(a.Members)
		}
		if base, ok := a.rule.baseLimit(a.Window); ok {
			// The block holds the limit it crossed, as adapted; the
			// detection says both.
			out.EffectiveLimit, out.Limit = out.Limit, float64(base)
		}
		p.opts.OnDetection(out)
	}
}

// target is what an action acts on for a block: its key, or one of its
// members.
type target struct{ keyType, key string }

// targets are what an external action of the block acts on: for a
// firewall or map action of a rule that enforces on clients, the block's
// member addresses; otherwise its key.
func (a *active) targets(act actions.Action) []target {
	if a.rule != nil && a.rule.onClients && actions.Enforces(act) {
		out := make([]target, len(a.Members))
		for i, m := range a.Members {
			out[i] = target{"client_ip", m}
		}
		return out
	}
	return []target{{a.KeyType, a.Key}}
}

// holdKey names what one action holds for one target.
type holdKey struct {
	action string
	target
}

// holding is how many blocks in force hold an action on a target, and
// until when the latest of them lasts.
type holding struct {
	blocks int
	until  time.Time // zero: one of them has no end
}

// hold counts one more block holding act on t until until, and returns
// when the action must last: the latest end of the blocks holding it, so
// that a shorter block applied after a longer one does not cut its nft
// element short.
func (p *Pipeline) hold(act actions.Action, t target, until time.Time) time.Time {
	k := holdKey{act.Name(), t}
	h := p.holds[k]
	if h == nil {
		h = &holding{until: until}
		p.holds[k] = h
	} else if h.blocks > 0 && !h.until.IsZero() && (until.IsZero() || until.After(h.until)) {
		h.until = until
	}
	h.blocks++
	return h.until
}

// release counts one block fewer holding act on t, and reports whether
// none is left: only then is the action lifted.
func (p *Pipeline) release(act actions.Action, t target) bool {
	k := holdKey{act.Name(), t}
	h := p.holds[k]
	if h == nil {
		return true
	}
	if h.blocks--; h.blocks > 0 {
		return false
	}
	delete(p.holds, k)
	return true
}

// enforceOn adds the client of an event of a blocked key to the block's
// enforcement, and applies the rule's firewall and map actions to it: a
// client that sends a blocked sender's mail is blocked from its next
// message.
func (p *Pipeline) enforceOn(a *active, e *parsers.Event) {
	if !a.addMember(e.ClientIP) {
		return
	}
	addr := a.Members[len(a.Members)-1]
	p.batch.Members = append(p.batch.Members, state.Member{ID: a.ID, Addr: addr})
	t := target{"client_ip", addr}
	for _, act := range a.rule.actions {
		if !actions.Enforces(act) {
			continue
		}
		until := p.hold(act, t, a.Until)
		if p.opts.Executor == nil {
			continue
		}
		d := actions.Detection{Event: "block", Time: e.Time, BlockID: a.ID, Rule: a.Rule, KeyType: t.keyType, Key: t.key,
			Value: a.Value, Limit: a.Limit, Window: a.Window, Until: until, Now: p.clock}
		p.opts.Executor.Dispatch(d, []actions.Action{act})
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
	if b, ok := p.inFlight[id]; ok {
		b.Actions[action] = status
		p.unsaved[id] = b // saved again by the next commit, with it
		p.mu.Unlock()
		return
	}
	if p.outcomes == nil {
		p.outcomes = map[int64]map[string]string{}
	}
	if p.outcomes[id] == nil {
		p.outcomes[id] = map[string]string{}
	}
	p.outcomes[id][action] = status
	p.mu.Unlock()
	if p.opts.Store != nil {
		if err := p.opts.Store.SetActionStatus(id, action, status); err != nil {
			p.log.Error("record action status", "block", id, "action", action, "err", err)
		}
	}
}

// Commit saves, in one transaction, the windows changed, the blocks started
// and lifted, and how far each source of m (nil: none) has been read, and
// waits until it is saved. Without wait the transaction may run in the
// background (see commit).
func (p *Pipeline) Commit(m *input.Merger) error {
	return p.commit(m, true)
}

// CommitNow is Commit that may leave the transaction running in the
// background, unless wait is set.
func (p *Pipeline) CommitNow(m *input.Merger, wait bool) error {
	return p.commit(m, wait)
}

// Unsaved is about how many bytes the batches not yet saved hold: what
// grows while the state cannot be saved.
func (p *Pipeline) Unsaved() int {
	n := len(p.batch.Events) + p.batch.Segment.Size() + p.batch.Stats.Size()
	if p.failed {
		n += len(p.spare.Events) + p.spare.Segment.Size() + p.spare.Stats.Size()
	}
	return n
}

// Blocking reports whether there are blocks no commit under way saves:
// started since the last commit, or with an action outcome reported while
// theirs was under way. The daemon saves them at once, so that other
// hosts sharing the state, and `bans list`, see them without waiting for
// the next periodic save.
func (p *Pipeline) Blocking() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.unsaved) > 0
}

// Close waits for a commit under way.
func (p *Pipeline) Close() error { return p.waitCommit() }

// commit saves the state. Unless wait is set, the transaction runs in the
// background while the pipeline goes on with the next events, with one
// commit under way at most: the next waits for it. An action's outcome
// goes to the store only once its block is there: until then it is
// written on the block (see unsaved and inFlight).
func (p *Pipeline) commit(m *input.Merger, wait bool) error {
	p.events = 0
	p.evict()
	if p.opts.Store == nil {
		for _, r := range p.rules {
			for _, nw := range r.stores {
				nw.w.Flush(func(string, window.State) {})
			}
			if r.burst != nil {
				r.burst.Flush(func(string, []int64, []int64, []uint64) {})
			}
			if r.seenFrom != nil {
				r.seenFrom.discard()
			}
		}
		p.mu.Lock() // action outcomes come in from the Executor's goroutines
		clear(p.unsaved)
		p.mu.Unlock()
		p.batch.Reset()
		return nil
	}
	b := p.batch
	p.pruneStats(b)
	// The store keeps the windows as batches saved them; once it holds as
	// many rewritten or forgotten as there are keys, this batch saves
	// every key, and the store drops the rest: what it keeps stays within
	// about twice what is kept in memory, and a write costs about two. A
	// new key's first window is no waste: a flood of new keys makes no
	// full batch until they are forgotten.
	if p.fullBatchDue() {
		p.resave()
		b.Full = true
		p.records = 0
	}
	before := b.Segment.Len()
	var sw state.Window // encoded at once: reused
	for _, r := range p.rules {
		for _, nw := range r.stores {
			nw.w.Flush(func(key string, st window.State) {
				sw = state.Window{Rule: nw.name, Key: key, Delete: st.Empty(),
					Times: st.Times, Amounts: st.Amounts, Tags: st.Tags, Offset: st.Offset, Touched: st.Touched}
				b.Segment.Add(&sw)
			})
		}
		if r.seenFrom != nil {
			name := r.name + "/members" // once, not a string a window
			r.seenFrom.flush(func(key string, times []int64, addrs []netip.Addr) {
				sw = state.Window{Rule: name, Key: key, Delete: len(times) == 0, Times: times, Addrs: addrs}
				b.Segment.Add(&sw)
			})
		}
		if r.burst != nil {
			name := r.name + "/burst"
			r.burst.Flush(func(key string, times, dates []int64, tags []uint64) {
				sw = state.Window{Rule: name, Key: key, Delete: times == nil, Times: times, Dates: dates, Tags: tags}
				b.Segment.Add(&sw)
			})
		}
	}
	p.records += b.Segment.Len() - before
	if m != nil {
		b.Positions = m.Positions(b.Positions) // first: it hands on the batches' stats
		m.TakeStats(&b.Stats)
		b.Events = m.TakeEvents(b.Events)
	}
	b.Clock = p.clock
	// A batch that failed (disk full, read-only, locked, out of reach) is
	// saved first, before anything newer: until it is, b keeps growing and
	// nothing is lost. The error is returned, each time, to a caller that
	// retries.
	if err := p.settle(wait); err != nil {
		return err
	}
	p.setAsideIDs()
	// The spare batch is free now: the next events fill it.
	p.batch, p.spare = p.spare, p.batch
	p.batch.Reset()

	p.mu.Lock()
	for _, blk := range p.unsaved {
		// Their outcomes as of now: the Executor writes the blocks' own,
		// under p.mu, while the batch is saved without it.
		saved := *blk
		saved.Actions = maps.Clone(blk.Actions)
		b.Blocks = append(b.Blocks, saved)
	}
	slices.SortFunc(b.Blocks, func(x, y state.Block) int { return int(x.ID - y.ID) })
	if wait {
		// Held through the commit: an action finishing meanwhile must find
		// its block either here or in the store.
		defer p.mu.Unlock()
		seq := p.nextCommit()
		if err := p.opts.Store.Commit(b); err != nil {
			p.failed, p.lastErr = true, err // b is the spare: retried first
			return err
		}
		p.saved(seq)
		clear(p.unsaved)
		return nil
	}
	p.inFlight, p.unsaved = p.unsaved, p.inFlight
	clear(p.unsaved)
	p.mu.Unlock()
	p.startCommit(b)
	return nil
}

// landed ends the hold of the commit under way on its blocks: saved, they
// are the store's (those with an outcome reported meanwhile are unsaved
// again: Blocking says so); failed, the next batch saves them all again.
func (p *Pipeline) landed(ok bool) {
	p.mu.Lock()
	if !ok {
		maps.Copy(p.unsaved, p.inFlight)
	}
	clear(p.inFlight)
	p.mu.Unlock()
}

// evict keeps the keys the rules hold under MaxKeys, whatever an attacker
// sends: past it, it forgets the least recently seen keys — in memory,
// and in the store with the next batch — down to nine tenths of the cap,
// but never a key that is blocked or near a limit of a rule (its measure
// over half the limit). Keys are ordered by a sample of when they were
// last seen: a few thousand from each window. Keys last seen at the same
// time, on their windows' grid (a flood fills a minute of a day's window
// with thousands), are forgotten only as many as are still needed: not
// all of them, which took a flood's cap down to nothing.
func (p *Pipeline) evict() {
	total := p.Keys()
	if total+p.parts.windows <= p.opts.MaxKeys {
		return
	}
	if p.parts.due != 0 {
		p.RestoreAll() // the least recently seen may be among them
		if total = p.Keys(); total <= p.opts.MaxKeys {
			return
		}
	}
	need := total - p.opts.MaxKeys*9/10
	var sample []int64
	each := func(n int) int { return max(64, 1<<16*n/total) }
	for _, r := range p.rules {
		for _, nw := range r.stores {
			nw.w.Sample(each(nw.w.Len()), func(t int64) { sample = append(sample, t) })
		}
		if r.burst != nil {
			r.burst.Sample(each(r.burst.Len()), func(t int64) { sample = append(sample, t) })
		}
	}
	if len(sample) == 0 {
		return
	}
	slices.Sort(sample)
	last := sample[min(len(sample)-1, need*len(sample)/total)]
	evicted := p.forgetSeenBefore(last, -1) // those seen before the last time to go
	if evicted < need {
		evicted += p.forgetSeenBefore(last+1, need-evicted) // of those seen then, enough
	}
	p.Stats.Evicted += int64(evicted)
	p.log.Warn("too many keys: forgot the least recently seen", "max_keys", p.opts.MaxKeys, "keys", total,
		"forgotten", evicted, "last_seen_before", time.Unix(0, last+1).UTC())
}

// forgetSeenBefore forgets the keys last seen before before (Unix ns), but
// those blocked or near a limit, and at most budget of them (-1: all). It
// returns how many it forgot.
func (p *Pipeline) forgetSeenBefore(before int64, budget int) int {
	near := func(r *rule, i int, key string, v int64) bool {
		if r.blocked[key] != nil {
			return true
		}
		limit := r.limits[i]
		if r.adapt != nil {
			limit = r.bases[i]
		}
		return 2*v > limit
	}
	// spent says a key is kept because the budget is: it is called for
	// a key that would go otherwise, and counts it.
	spent := func() bool {
		if budget == 0 {
			return true
		}
		if budget > 0 {
			budget--
		}
		return false
	}
	evicted := 0
	for _, r := range p.rules {
		blocked := func(key string, _ int64) bool { return r.blocked[key] != nil || spent() }
		for _, i := range r.own {
			c := r.counters[i]
			evicted += c.w.Evict(before, func(key string, v int64) bool {
				for _, rd := range c.readers {
					if near(rd.r, rd.i, key, v) {
						return true
					}
				}
				return spent()
			})
		}
		for _, pk := range r.peaks {
			evicted += pk.Evict(before, blocked)
		}
		if r.rate != nil {
			evicted += r.rate.Evict(before, func(key string, v int64) bool { return near(r, 0, key, v) || spent() })
		}
		if r.burst != nil {
			evicted += r.burst.Evict(before, blocked)
		}
		if r.seenFrom != nil && budget < 0 {
			// Members of keys last seen then are kept, whether their key
			// went or not: what a block of it would be enforced on.
			r.seenFrom.evict(time.Unix(0, before), func(key string) bool { return r.blocked[key] != nil })
		}
	}
	return evicted
}

// minFull is the fewest windows rewritten or forgotten that make a batch
// save every key (see commit): fewer cost the store little.
var minFull = 1 << 16

// savedKeys is how many keys the store keeps a window of once the windows
// changed are saved: those of the rules' windows, bursts and members.
func (p *Pipeline) savedKeys() int {
	n := p.Keys()
	for _, r := range p.rules {
		if r.seenFrom != nil {
			n += len(r.seenFrom.keys)
		}
	}
	return n
}

// resave marks every key of every window changed, for a full batch.
func (p *Pipeline) resave() {
	for _, r := range p.rules {
		for _, nw := range r.stores {
			nw.w.Resave()
		}
		if r.seenFrom != nil {
			r.seenFrom.resave()
		}
		if r.burst != nil {
			r.burst.Resave()
		}
	}
}

// Settle waits for the commit under way, if any, and saves again a batch
// whose commit failed; it returns the error of either. A caller that gets
// one may go on calling Commit or Settle: the failed batch is kept, and
// tried again before anything newer.
func (p *Pipeline) Settle() error { return p.settle(true) }

// Retry is Settle that does not wait for a store that failed: the failed
// batch is tried again in the background, and Retry returns its last
// error until a try succeeds. A store out of reach that does not refuse
// (its server hung, packets dropped) then holds no reading while it times
// out, only the background try.
func (p *Pipeline) Retry() error { return p.settle(false) }

func (p *Pipeline) settle(wait bool) error {
	if p.committed != nil {
		if p.failed && !wait { // a try of a failed batch: not waited for
			select {
			case err := <-p.committed:
				p.committed = nil
				p.landed(err == nil)
				if err != nil {
					p.lastErr = err
					return err
				}
				p.saved(p.committing)
				return nil
			default:
				return p.lastErr
			}
		}
		if err := p.waitCommit(); err != nil {
			return err
		}
	}
	if p.failed {
		if !wait {
			p.startCommit(p.spare)
			return p.lastErr
		}
		seq := p.nextCommit()
		if err := p.opts.Store.Commit(p.spare); err != nil {
			p.lastErr = err
			return err
		}
		// Its blocks stay unsaved: the next commit writes them again, with
		// the action outcomes reported meanwhile.
		p.saved(seq)
	}
	return nil
}

// nextCommit numbers a commit about to start.
func (p *Pipeline) nextCommit() int64 {
	p.commits++
	return p.commits
}

// startCommit commits b in the background (see commit).
func (p *Pipeline) startCommit(b *state.Batch) {
	c := make(chan error, 1)
	p.committed, p.committing = c, p.nextCommit()
	go func() { c <- p.opts.Store.Commit(b) }()
}

// saved notes that the spare batch was saved, by the commit numbered seq:
// one started before the store was found out of reach does not say it is
// back.
func (p *Pipeline) saved(seq int64) {
	p.failed, p.lastErr = false, nil
	if seq > p.unreachableAfter {
		p.unreachable = false
	}
	if p.savedPositions == nil {
		p.savedPositions = map[string]state.Position{}
	}
	for _, pos := range p.spare.Positions {
		p.savedPositions[pos.Input] = pos
	}
}

// SavedPositions are the inputs' positions the store holds: those of the
// last batch saved, or of the state loaded. The map is the pipeline's.
func (p *Pipeline) SavedPositions() map[string]state.Position { return p.savedPositions }

// waitCommit waits for the commit under way, if any, and returns its
// error; the batch that failed is kept to be saved again.
func (p *Pipeline) waitCommit() error {
	if p.committed == nil {
		return nil
	}
	err := <-p.committed
	p.committed = nil
	p.landed(err == nil)
	if err != nil {
		p.failed, p.lastErr = true, err // the batch committed was the spare
	} else {
		p.saved(p.committing)
	}
	return err
}

// Keys is how many keys the rules' windows hold.
func (p *Pipeline) Keys() int {
	n := 0
	for _, r := range p.rules {
		for _, nw := range r.stores {
			n += nw.w.Len()
		}
		if r.burst != nil {
			n += r.burst.Len()
		}
	}
	return n
}

// Clock is the pipeline's time: the newest event time seen.
func (p *Pipeline) Clock() time.Time { return p.clock }

// Active returns the blocks in force, oldest first, with the outcomes of
// their actions reported so far (in maps of their own: the Executor's
// reports change the blocks').
func (p *Pipeline) Active() []state.Block {
	var out []state.Block
	p.mu.Lock()
	defer p.mu.Unlock()
	for id := range p.outcomes {
		if p.inForce[id] == nil {
			delete(p.outcomes, id)
		}
	}
	for _, a := range p.inForce {
		b := a.Block
		b.Actions = maps.Clone(b.Actions)
		maps.Copy(b.Actions, p.outcomes[b.ID])
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b state.Block) int { return int(a.ID - b.ID) })
	return out
}

// due is a block's end in the heap. A block whose end moved leaves its old
// entries behind; they are skipped when they come up.
type due struct {
	at time.Time
	a  *active
}

// endHeap orders ends by time, then by block.
type endHeap []due

func (h endHeap) Len() int { return len(h) }
func (h endHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].a.ID < h[j].a.ID
	}
	return h[i].at.Before(h[j].at)
}
func (h endHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *endHeap) Push(x any)   { *h = append(*h, x.(due)) }
func (h *endHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	*h = old[:len(old)-1]
	return d
}
