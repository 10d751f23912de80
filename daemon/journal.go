package daemon

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/bombwatch/bombwatch/internal/safefile"
	"github.com/bombwatch/bombwatch/pipeline"
	"github.com/bombwatch/bombwatch/state"
)

// A host sharing a PostgreSQL state keeps a journal: a local SQLite state
// (config journal:) that lets it start when the database cannot be
// reached. While the shared state is saved, the journal is given, each
// tick, the input positions the shared state holds and the blocks in
// force: no windows, so it costs one small local write a second. A daemon
// that cannot open the shared state at start runs on the journal instead,
// alone — its windows counted from those positions, its blocks enforced,
// a restart resuming where it stopped — and looks for the shared state
// every probeEvery. Once reached, the daemon starts again on it: the
// blocks decided alone are handed over (claimed, so that a host that
// decided one too shares its ID), and the logs are read again from the
// positions the shared state holds, so that every line is counted there
// once.
type journal struct {
	path  string
	store state.Store
	lock  *safefile.Lock
	// What the journal holds: the positions and blocks written last
	// (the blocks by a summary that changes when they do).
	positions map[string]state.Position
	blocks    map[int64]string
	cleared   bool // its windows dropped: those of the last run alone
}

// probeEvery is how often a daemon running alone on its journal tries to
// reach the shared state.
var probeEvery = 5 * time.Second

func openJournal(path string) (*journal, error) {
	lock, err := safefile.LockState(path)
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	st, err := state.Open("sqlite:"+path, state.OpenOptions{})
	if err != nil {
		lock.Unlock()
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	snap, err := st.Load()
	if err != nil {
		st.Close()
		lock.Unlock()
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	j := &journal{path: path, store: st, lock: lock, positions: snap.Positions, blocks: map[int64]string{}}
	for _, b := range snap.Blocks {
		j.blocks[b.ID] = "" // rewritten by the first copy
	}
	return j, nil
}

// Close closes the journal's store (unless the daemon runs on it and
// closes it itself) and lets it go.
func (j *journal) Close(storeToo bool) {
	if storeToo {
		j.store.Close()
	}
	j.lock.Unlock()
}

// copy writes to the journal what changed of the positions the shared
// state holds and of the blocks in force.
func (j *journal) copy(p *pipeline.Pipeline, now time.Time) error {
	b := &state.Batch{Full: !j.cleared}
	for name, pos := range p.SavedPositions() {
		if old, ok := j.positions[name]; !ok || !samePosition(old, pos) {
			b.Positions = append(b.Positions, pos)
		}
	}
	if len(b.Positions) > 0 {
		b.Clock = p.Clock()
	}
	active := p.Active()
	in := make(map[int64]bool, len(active))
	for _, bl := range active {
		in[bl.ID] = true
		if sum := summary(&bl); j.blocks[bl.ID] != sum {
			b.Blocks = append(b.Blocks, bl)
		}
	}
	for id := range j.blocks {
		if !in[id] {
			b.Ends = append(b.Ends, state.End{ID: id, Time: now, Reason: "not in force in the shared state"})
		}
	}
	if b.Empty() {
		return nil
	}
	if err := j.store.Commit(b); err != nil {
		return err
	}
	j.cleared = true
	for _, pos := range b.Positions {
		j.positions[pos.Input] = pos
	}
	for _, bl := range b.Blocks {
		j.blocks[bl.ID] = summary(&bl)
	}
	for _, e := range b.Ends {
		delete(j.blocks, e.ID)
	}
	return nil
}

func samePosition(a, b state.Position) bool {
	return a.Device == b.Device && a.Inode == b.Inode && a.Offset == b.Offset && a.Line == b.Line &&
		bytes.Equal(a.Fingerprint, b.Fingerprint) && slices.Equal(a.Counted, b.Counted)
}

// summary is what of a block the journal is written again for.
func summary(b *state.Block) string {
	var s strings.Builder
	fmt.Fprint(&s, b.Until.UnixNano(), " ", len(b.Members))
	for _, name := range slices.Sorted(maps.Keys(b.Actions)) {
		s.WriteString(" " + name + "=" + b.Actions[name])
	}
	return s.String()
}

// handOver saves in the shared state the blocks the journal holds in
// force that it does not: those decided alone while it could not be
// reached. Each claims its rule and key, so that it is the block another
// host decided too, if one did; one the shared state holds for its key
// already is left to it. Their action outcomes go with them: this host
// does not run them again. It returns the blocks in force here when this
// host last ran that another host lifted since (see Pipeline.LiftedAway).
func (j *journal) handOver(shared state.Shared, store state.Store, log *slog.Logger) (away []state.Block, err error) {
	snap, err := j.store.Load()
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", j.path, err)
	}
	if len(snap.Blocks) == 0 {
		return nil, nil
	}
	// A copy is a block the shared state holds, in force or not: one
	// that ended there while this host was away is not brought back.
	oldest := snap.Blocks[0].Since
	for _, b := range snap.Blocks {
		if b.Since.Before(oldest) {
			oldest = b.Since
		}
	}
	known, err := store.Blocks(false, oldest.Add(-time.Nanosecond))
	if err != nil {
		return nil, err
	}
	type key struct{ rule, keyType, key string }
	type copied struct {
		id    int64
		key   key
		since int64
	}
	have, copies := map[key]*state.Block{}, map[copied]*state.Block{}
	for i := range known {
		b := &known[i]
		k := key{b.Rule, b.KeyType, b.Key}
		copies[copied{b.ID, k, b.Since.UnixNano()}] = b
		if b.Ended.IsZero() {
			have[k] = b
		}
	}
	var batch state.Batch
	for _, b := range snap.Blocks {
		k := key{b.Rule, b.KeyType, b.Key}
		if c := copies[copied{b.ID, k, b.Since.UnixNano()}]; c != nil && !c.Ended.IsZero() && c.EndedOn != shared.Host() {
			away = append(away, *c)
			continue
		}
		saved := cmp.Or(copies[copied{b.ID, k, b.Since.UnixNano()}], have[k])
		if saved != nil {
			// A copy, or a block the shared state holds for its key (saved
			// by another host, or by this one's last try, whose answer was
			// lost): what the actions did here goes with it, so that they
			// are not run here again.
			for action, status := range b.Actions {
				if status != state.Pending && cmp.Or(saved.Actions[action], state.Pending) == state.Pending {
					if err := store.SetActionStatus(saved.ID, action, status); err != nil {
						return nil, err
					}
				}
			}
			continue
		}
		first, err := store.ReserveIDs(1)
		if err != nil {
			return nil, err
		}
		id, err := shared.ClaimBlock(b.Rule, b.KeyType, b.Key, b.Since, first)
		if err != nil {
			return nil, err
		}
		if id != first {
			// Another host decided it too, and lifted it since. Here it
			// stays its own block, in force until its end: its actions ran
			// here, and are lifted then.
			log.Info("journal: a block decided alone was decided, and lifted, by another host", "block", id, "rule", b.Rule, "key", b.Key)
		}
		b.ID = first
		batch.Blocks = append(batch.Blocks, b)
	}
	if len(batch.Blocks) == 0 {
		return away, nil
	}
	if err := store.Commit(&batch); err != nil {
		return nil, err
	}
	log.Info("journal: the blocks decided alone are saved in the shared state", "journal", j.path, "blocks", len(batch.Blocks))
	return away, nil
}

// probe tries every probeEvery to open the shared state, and receives once
// it could. It stops when ctx is done.
func probe(ctx context.Context, open func(string) (state.Store, error), dsn string) <-chan struct{} {
	reached := make(chan struct{})
	go func() {
		t := time.NewTicker(cmp.Or(probeEvery, time.Second))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if s, err := open(dsn); err == nil {
				s.Close()
				close(reached)
				return
			}
		}
	}()
	return reached
}
