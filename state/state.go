// Package state holds what bombwatch remembers across restarts — window
// contents, blocks, input positions and the pipeline clock — and the small
// Store interface behind which it is kept.
//
// SQLite (package sqlite) is the embedded store; Memory keeps it for the
// length of a run. A store shared by several MX hosts can implement the same
// interface. A Batch is committed in one transaction, so the lines read and
// the state they produced are saved together or not at all.
package state

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Action statuses on a block.
const (
	Pending = "pending"
	Applied = "applied"
	Failed  = "failed"
	DryRun  = "dry_run"
)

// Block is a key that a rule blocked.
type Block struct {
	ID      int64
	Rule    string
	KeyType string
	Key     string
	Since   time.Time
	Until   time.Time // zero: no end by time
	Value   float64   // the measure when the limit was crossed
	Limit   float64
	// File and Line are the log line that crossed the limit.
	File    string
	Line    int64
	Window  time.Duration
	Actions map[string]string // action name → status
	// Members are the client addresses a block is enforced on when its
	// rule enforces on clients rather than on its key.
	Members []string
	// Ended is when the block was lifted, zero while it is in force.
	Ended     time.Time
	EndReason string // "expired", "unban"
	// EndedOn is the host that lifted it, in a store several hosts share
	// (Shared); "" in the others.
	EndedOn string
	// Host is where the event that crossed the limit was seen: the
	// logging host of its line, or the host that decided, when the line
	// names none (a ban by hand, multilog's lines).
	Host string
	// Evidence are the events the rule counted in the window that was
	// crossed, oldest first, the crossing one last: at most the limit+1
	// newest (the burst measure's: its newest 100 terms).
	Evidence []Evidence
}

// Evidence is one counted event of a block: where it was logged. Count is
// how many events it stands for — a window keeps the events of one
// interval of its resolution as one entry, from the first — and Amount
// what they added (bytes, recipients; the count for a count). Date is a
// burst measure's Date: header.
type Evidence struct {
	File   string    `json:"file"`
	Line   int64     `json:"line"`
	Time   time.Time `json:"time"`
	Amount int64     `json:"amount,omitempty"`
	Date   time.Time `json:"date,omitzero"`
}

// Active reports whether the block is in force.
func (b *Block) Active() bool { return b.Ended.IsZero() }

// Window is a rule's window for one key: the times of its latest events, in
// Unix nanoseconds, oldest first, and what goes with them. Rule names the
// rule and which of its windows ("sender-flood/0", "burst/burst").
type Window struct {
	Rule    string
	Key     string
	Times   []int64
	Amounts []int64 // nil: every event counts 1
	Dates   []int64 // the burst measure's Date: headers; 0 where unknown
	// Tags are where each entry's event was logged (see Files); nil when
	// unknown.
	Tags []uint64
	// Addrs are, for the client addresses a network rule's key was sent
	// from ("rule/members"), the address seen at each of Times.
	Addrs   []netip.Addr
	Offset  int64 // forgiveness
	Touched int64
	Delete  bool // the key is forgotten
}

// Stat is what reports need of a minute, compactly: per key type and key,
// the messages, bytes and recipients seen. Key type "kind" counts events by
// kind, "lost" lost connections by how long they lasted (10-second buckets,
// "unknown" without a connect), "pipelining" improper pipelining. Sender
// domains and client networks are summed from senders and addresses when
// read: storing them too would double what each message costs.
type Stat struct {
	Minute     int64 // Unix time / 60
	KeyType    string
	Key        string
	Messages   int64
	Bytes      int64
	Recipients int64
}

// Offense counts a key's blocks by a rule, for escalation.
type Offense struct {
	Rule  string
	Key   string
	Count int
	Last  time.Time
}

// Position is how far an input has been read: the line after Line starts at
// Offset, in the file identified by Device, Inode and Fingerprint (a hash
// of its first bytes, which tells a new file that reused an inode).
type Position struct {
	Input       string
	Device      uint64
	Inode       uint64
	Offset      int64
	Line        int64
	Fingerprint []byte
	// Counted is what the input's parser counted and the log may name
	// again (see parsers.Resumable), saved with the position it goes with.
	Counted []string
}

// Member is a client address added to a block's enforcement.
type Member struct {
	ID   int64 // the block
	Addr string
}

// End is a block being lifted.
type End struct {
	ID     int64
	Time   time.Time
	Reason string
}

// Batch is the state changed by a run of lines.
type Batch struct {
	// Segment holds the windows changed, encoded; Full says it holds every
	// window kept: the store drops all it saved before (see Store.Windows).
	Segment Segment
	Full    bool
	Blocks  []Block // new blocks
	// Ends lifts blocks. Only the end is written, so that action statuses
	// recorded meanwhile by SetActionStatus are kept.
	Ends     []End
	Members  []Member // added to blocks, new or saved
	Offenses []Offense
	Stats    Stats // added to what is saved
	// PruneStats, when set, drops the stats of minutes before it.
	PruneStats time.Time
	Positions  []Position
	Clock      time.Time // the pipeline's clock: the newest event time
	// Manual marks a change made by hand (`bans`), for ManualChanges.
	Manual bool
	// Files are log file names first seen since the last batch: the file
	// of a window's tag is Snapshot.Files[tag>>40 - 1], in the order
	// added over the store's life.
	Files []string
	// Events are the events of this host's own logs that ran since the
	// last batch, encoded one after the other (parsers.Event.AppendBinary):
	// a store shared by several hosts keeps them for the others (see
	// Shared); the others ignore them.
	Events []byte
}

// Empty reports whether the batch changes nothing.
func (b *Batch) Empty() bool {
	return b.Segment.Len() == 0 && !b.Full && len(b.Blocks) == 0 && len(b.Ends) == 0 && len(b.Members) == 0 && len(b.Offenses) == 0 &&
		b.Stats.Size() == 0 && b.PruneStats.IsZero() && len(b.Positions) == 0 && b.Clock.IsZero() && !b.Manual && len(b.Files) == 0 &&
		len(b.Events) == 0
}

// Reset empties the batch for reuse.
func (b *Batch) Reset() {
	b.Segment.Reset()
	b.Full = false
	b.Blocks = b.Blocks[:0]
	b.Ends = b.Ends[:0]
	b.Members = b.Members[:0]
	b.Offenses = b.Offenses[:0]
	b.Stats.Reset()
	b.PruneStats = time.Time{}
	b.Positions = b.Positions[:0]
	b.Clock = time.Time{}
	b.Manual = false
	b.Files = b.Files[:0]
	b.Events = b.Events[:0]
}

// Snapshot is the state loaded at start, but for the windows, which are
// streamed (Store.Windows): a million of them in one slice would cost more
// than reading them.
type Snapshot struct {
	Blocks    []Block // those in force
	Offenses  []Offense
	Positions map[string]Position
	Clock     time.Time
	Files     []string // see Batch.Files
}

// Store keeps state. Commit and Load are called from one goroutine;
// SetActionStatus may be called from others.
type Store interface {
	Load() (*Snapshot, error)
	// Windows calls fn with the windows saved, in the order they were
	// committed since the last Full batch: a later window of a rule and key
	// replaces an earlier one, and one with Delete set forgets it. A store
	// need not keep only the newest: appending a batch's Segment as it is
	// is what makes a commit of a million new keys cheap. The Window, its
	// Key and its slices are only valid during the call.
	Windows(fn func(*Window)) error
	Commit(*Batch) error
	// SetActionStatus records the outcome of one action of a block.
	SetActionStatus(blockID int64, action, status string) error
	// Blocks returns blocks: those in force, or all of them since a time.
	Blocks(activeOnly bool, since time.Time) ([]Block, error)
	// ReserveIDs sets aside n block IDs and returns the first: IDs come
	// from the store, so that a ban made by hand while the daemon runs,
	// or another host's block, never takes an ID that is in use.
	ReserveIDs(n int64) (int64, error)
	// ManualChanges counts the batches committed with Manual set, over
	// the store's life: the daemon looks at it every second to pick up
	// `bans ban` and `bans unban`.
	ManualChanges() (int64, error)
	// Stats calls fn for the stats saved of the minutes first to last
	// (Unix time / 60; a minute's may come in several parts, to be
	// summed): what reports read, with Blocks (Reader).
	Stats(firstMinute, lastMinute int64, fn func(*Stat)) error
	Close() error
}

// Shared is a store several MX hosts share, so that a bomb spread over
// them is counted as one: each host's batches carry the events of its own
// logs (Batch.Events), every host reads the others' and runs them, merged
// by time with its own (input.RemoteSource), and so counts what they
// count. Blocks are one set for all: Blocks returns every host's, a block
// is the same (same ID) wherever it was decided (ClaimBlock), and the
// statuses of its actions are each host's own.
type Shared interface {
	Store
	// Host is the name this host's rows are kept under.
	Host() string
	// Hosts are the other hosts that share the store.
	Hosts() ([]string, error)
	// Events calls fn with the runs of events host published, in order,
	// from the one numbered from on (see input.Feed).
	Events(host string, from int64, fn func(seq int64, events []byte) error) error
	// ClaimBlock returns the ID of the block of a rule and key from a
	// time: the same on every host that decides it — the block of the key
	// in force then, if another host started one — or else id, which the
	// caller reserved.
	ClaimBlock(rule, keyType, key string, since time.Time, id int64) (int64, error)
	// BlockChanges counts the changes of blocks — started, lifted, made
	// or lifted by hand — by any host, over the store's life.
	BlockChanges() (int64, error)
	// Notices receives, soon after another host commits, when host (""
	// for any) published events, or when any host changed blocks
	// (blocks): a wake-up, not a guarantee — readers poll as well.
	Notices(host string) <-chan struct{}
	BlockNotices() <-chan struct{}
}

// Memory is a Store that keeps state for the life of the process: the
// state of `bombwatch replay` without --db.
type Memory struct {
	mu        sync.Mutex
	windows   map[[2]string]Window
	offenses  map[[2]string]Offense
	blocks    map[int64]Block
	positions map[string]Position
	clock     time.Time
	nextID    int64
	manual    int64
	files     []string
	stats     []Stat
}

// NewMemory returns an empty Memory store.
func NewMemory() *Memory {
	return &Memory{windows: map[[2]string]Window{}, offenses: map[[2]string]Offense{}, blocks: map[int64]Block{}, positions: map[string]Position{}}
}

func (m *Memory) Load() (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &Snapshot{Positions: maps.Clone(m.positions), Clock: m.clock, Files: slices.Clone(m.files)}
	for _, o := range m.offenses {
		s.Offenses = append(s.Offenses, o)
	}
	for _, b := range m.blocks {
		if b.Active() {
			s.Blocks = append(s.Blocks, b)
		}
	}
	slices.SortFunc(s.Blocks, func(a, b Block) int { return int(a.ID - b.ID) })
	return s, nil
}

func (m *Memory) Windows(fn func(*Window)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.windows {
		fn(&w)
	}
	return nil
}

func (m *Memory) Commit(b *Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b.Full {
		clear(m.windows)
	}
	for _, chunk := range b.Segment.Chunks() {
		err := DecodeChunk(chunk, func(w *Window) {
			k := [2]string{w.Rule, w.Key}
			if w.Delete {
				delete(m.windows, k)
				return
			}
			k[1] = strings.Clone(w.Key)
			c := *w
			c.Key = strings.Clone(w.Key)
			c.Times, c.Amounts, c.Dates, c.Tags = slices.Clone(w.Times), slices.Clone(w.Amounts), slices.Clone(w.Dates), slices.Clone(w.Tags)
			c.Addrs = slices.Clone(w.Addrs)
			m.windows[k] = c
		})
		if err != nil {
			return err
		}
	}
	for _, o := range b.Offenses {
		m.offenses[[2]string{o.Rule, o.Key}] = o
	}
	for _, bl := range b.Blocks {
		bl.Actions = maps.Clone(bl.Actions)
		bl.Members = slices.Clone(bl.Members)
		bl.Evidence = slices.Clone(bl.Evidence)
		m.blocks[bl.ID] = bl
	}
	for _, mb := range b.Members {
		if bl, ok := m.blocks[mb.ID]; ok && !slices.Contains(bl.Members, mb.Addr) {
			bl.Members = append(slices.Clone(bl.Members), mb.Addr)
			m.blocks[mb.ID] = bl
		}
	}
	for _, e := range b.Ends {
		if bl, ok := m.blocks[e.ID]; ok {
			bl.Ended, bl.EndReason = e.Time, e.Reason
			m.blocks[e.ID] = bl
		}
	}
	for _, p := range b.Positions {
		m.positions[p.Input] = p
	}
	if !b.Clock.IsZero() {
		m.clock = b.Clock
	}
	if b.Manual {
		m.manual++
	}
	m.files = append(m.files, b.Files...)
	b.Stats.Each(func(st *Stat) { m.stats = append(m.stats, *st) }) // in minute order, as a store reads them
	if !b.PruneStats.IsZero() {
		cut := b.PruneStats.Unix() / 60
		m.stats = slices.DeleteFunc(m.stats, func(s Stat) bool { return s.Minute < cut })
	}
	return nil
}

// Stats calls fn for the stats of the minutes first to last (Unix time /
// 60), as committed.
func (m *Memory) Stats(first, last int64, fn func(*Stat)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.stats {
		if s := m.stats[i]; s.Minute >= first && s.Minute <= last {
			fn(&s)
		}
	}
	return nil
}

func (m *Memory) ReserveIDs(n int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	first := max(m.nextID, 1)
	for id := range m.blocks {
		first = max(first, id+1)
	}
	m.nextID = first + n
	return first, nil
}

func (m *Memory) ManualChanges() (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.manual, nil
}

func (m *Memory) SetActionStatus(id int64, action, status string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b, ok := m.blocks[id]; ok {
		b.Actions = maps.Clone(b.Actions)
		if b.Actions == nil {
			b.Actions = map[string]string{}
		}
		b.Actions[action] = status
		m.blocks[id] = b
	}
	return nil
}

func (m *Memory) Blocks(activeOnly bool, since time.Time) ([]Block, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Block
	for _, b := range m.blocks {
		// Those in force, and — since a time — those that ended after it.
		if activeOnly && !b.Active() || !activeOnly && !b.Active() && !b.Ended.After(since) {
			continue
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Block) int { return int(a.ID - b.ID) })
	return out, nil
}

func (m *Memory) Close() error { return nil }
