package pipeline

import (
	"hash/maphash"
	"math/bits"
	"strings"

	"github.com/bombwatch/bombwatch/state"
	"github.com/bombwatch/bombwatch/window"
)

// A restart used to restore every saved window before the first event
// ran: 1.4 s for a state of 3M keys, most of it putting the keys into the
// windows' tables; reading them is half that. Now the saved windows are read and sorted by key
// into restoreParts parts, kept encoded, and a part is restored when an
// event first needs a key of it (see key), or when the daemon has nothing
// else to do (RestoreNext). A key's windows are whole before any event
// counts it, so the decisions are those of a pipeline that restored
// everything first; what looks at every key (evicting past max_keys, a
// batch that saves every key) restores the rest first.

// restoreParts is how many parts the saved windows are sorted into: one
// is a 64th of the state (47,000 keys of 3M, restored in 19 ms), and which
// are yet to be restored fits in a word.
const restoreParts = 64

// partChunk is the size of a part's chunks.
const partChunk = 256 << 10

// savedParts are the saved windows yet to be restored, by part.
type savedParts struct {
	due     uint64 // bit i: part i is yet to be restored
	seed    maphash.Seed
	parts   [restoreParts]state.Segment
	windows int // how many the parts due hold, deletions included
}

func (sp *savedParts) of(key string) int {
	return int(maphash.String(sp.seed, key) % restoreParts)
}

func (sp *savedParts) ofBytes(key []byte) int {
	return int(maphash.Bytes(sp.seed, key) % restoreParts)
}

// RestoreWindows reads the saved windows, for a pipeline made with
// DeferWindows: the daemon enforces the blocks in force first, whatever
// the number of windows to read. Events must not run before it. The keys
// of the blocks in force are restored now (their ends are scheduled from
// their windows); the rest as they are needed (see savedParts).
func (p *Pipeline) RestoreWindows() error {
	if !p.windowsDue {
		return nil
	}
	p.windowsDue = false
	// The store hands back what was saved in order: a window replaces the
	// key's earlier one, and a Delete (no times) forgets it. A part keeps
	// that order for the keys it holds.
	sp := &p.parts
	sp.seed = maphash.MakeSeed()
	records := 0
	lastRule, restores := "", false // windows come by rule: a run of one each
	err := p.opts.Store.Windows(func(w *state.Window) {
		records++
		if w.Rule != lastRule {
			lastRule, restores = w.Rule, p.restores(w.Rule)
		}
		if restores {
			i := sp.of(w.Key)
			if sp.parts[i].ChunkSize == 0 {
				// Chunks that fill, not grow: growing 64 parts of
				// megabytes copied them over and over (0.8 s of 2M keys).
				sp.parts[i].ChunkSize = partChunk
			}
			sp.parts[i].Add(w)
			sp.due |= 1 << i
			sp.windows++
		}
	})
	if err != nil {
		p.parts = savedParts{}
		return err
	}
	p.records = records
	for _, a := range p.inForce {
		p.needKey(a.Key)
	}
	for _, rk := range p.resets {
		p.reset(rk.r, rk.key)
	}
	p.resets = nil
	for _, a := range p.inForce {
		if a.rule != nil && a.rule.release {
			p.scheduleRelease(a)
		}
	}
	return nil
}

// restores says whether the saved window named name is one of a rule in
// the config: the others are dropped.
func (p *Pipeline) restores(name string) bool {
	if p.savedWindow(name) != nil {
		return true
	}
	if name, ok := strings.CutSuffix(name, "/members"); ok {
		r := p.byName[name]
		return r != nil && r.seenFrom != nil
	}
	if name, ok := strings.CutSuffix(name, "/burst"); ok {
		r := p.byName[name]
		return r != nil && r.burst != nil
	}
	return false
}

// savedWindow is the window saved under name, or nil.
func (p *Pipeline) savedWindow(name string) window.Saved {
	if p.windowsByName == nil {
		p.windowsByName = map[string]window.Saved{}
		for _, r := range p.rules {
			for _, nw := range r.stores {
				p.windowsByName[nw.name] = nw.w
			}
		}
	}
	return p.windowsByName[name]
}

// need restores the part of key, if it is due: before an event counts it.
func (p *Pipeline) need(key []byte) {
	if i := p.parts.ofBytes(key); p.parts.due&(1<<i) != 0 {
		p.restorePart(i)
	}
}

func (p *Pipeline) needKey(key string) {
	if i := p.parts.of(key); p.parts.due&(1<<i) != 0 {
		p.restorePart(i)
	}
}

// RestoreNext restores one part of the saved windows yet to be restored,
// if any, and says whether more are left: the daemon calls it when no
// event is waiting.
func (p *Pipeline) RestoreNext() (more bool) {
	if p.parts.due != 0 {
		p.restorePart(bits.TrailingZeros64(p.parts.due))
	}
	return p.parts.due != 0
}

// RestoreAll restores every saved window yet to be restored.
func (p *Pipeline) RestoreAll() {
	for p.RestoreNext() {
	}
}

// Unrestored is how many saved windows are yet to be restored.
func (p *Pipeline) Unrestored() int { return p.parts.windows }

func (p *Pipeline) restorePart(i int) {
	seg := &p.parts.parts[i]
	p.parts.due &^= 1 << i
	p.parts.windows -= seg.Len()
	for _, chunk := range seg.Chunks() {
		// Encoded here, from what the store decoded: it decodes.
		_ = state.DecodeChunk(chunk, p.restoreWindow)
	}
	*seg = state.Segment{}
}

// restoreWindow puts a saved window back where it was.
func (p *Pipeline) restoreWindow(w *state.Window) {
	if win := p.savedWindow(w.Rule); win != nil {
		win.Restore(w.Key, window.State{Times: w.Times, Amounts: w.Amounts, Tags: w.Tags, Offset: w.Offset, Touched: w.Touched})
		return
	}
	if name, ok := strings.CutSuffix(w.Rule, "/members"); ok {
		p.byName[name].seenFrom.restore(w.Key, w.Times, w.Addrs)
		return
	}
	if name, ok := strings.CutSuffix(w.Rule, "/burst"); ok {
		p.byName[name].burst.Restore(w.Key, w.Times, w.Dates, w.Tags)
	}
}

// fullBatchDue says whether the store holds as many windows rewritten or
// forgotten as there are keys (see commit). The windows yet to be
// restored count as keys, all of them, the stale ones too: a batch is due
// without them only, and then they are restored, for it saves every key,
// and counted as the keys they are.
func (p *Pipeline) fullBatchDue() bool {
	due := func(keys int) bool { return p.records-keys >= max(keys, minFull) }
	if !due(p.savedKeys() + p.parts.windows) {
		return false
	}
	if p.parts.due != 0 {
		p.RestoreAll()
	}
	return due(p.savedKeys())
}

type ruleKey struct {
	r   *rule
	key string
}

// reset forgets key's count in r's first window, once it is restored.
func (p *Pipeline) reset(r *rule, key string) {
	if p.windowsDue {
		p.resets = append(p.resets, ruleKey{r, key})
		return
	}
	if p.parts.due != 0 {
		p.needKey(key)
	}
	r.windows[0].Reset(key)
}
