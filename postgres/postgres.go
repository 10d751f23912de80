// Package postgres keeps bombwatch's state in PostgreSQL: `state:
// postgres://user@host/db` (github.com/jackc/pgx/v5). It keeps what the
// embedded SQLite store keeps, in the same encodings (state.Segment for
// windows, state.Stats for the reports' counts), each batch in one
// transaction, and passes the same conformance suite (state/statetest).
//
// It is the store several MX hosts share (state.Shared). Each host keeps
// its own windows, positions, offenses and stats under its name
// (OpenOptions.Host, by default the machine's name), and appends the
// events of its own logs, in the transaction that saves the positions
// they were read up to, so that they are published exactly once. Every
// host reads the others' events and runs them merged by time with its
// own: all count the same windows, and a bomb spread over the hosts is
// seen whole. Blocks are one set for all hosts: a block of a rule, key
// and start has one ID whichever host decided it first (ClaimBlock), its
// row is written by the first to commit, and each host keeps the
// outcomes of its own actions. A commit that publishes events or changes
// blocks sends a notice (NOTIFY), which wakes the other hosts at once;
// they poll as well, for what a notice missed.
package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/bombwatch/bombwatch/state"
)

// schema is created at open when missing. Its version is kept in
// bombwatch_meta; a later change adds a step, as SQLite's migrations do.
const schema = `
CREATE TABLE IF NOT EXISTS bombwatch_meta (
	host  text NOT NULL,
	name  text NOT NULL,
	value bigint NOT NULL,
	PRIMARY KEY (host, name)
);
CREATE TABLE IF NOT EXISTS bombwatch_segments (
	host text NOT NULL,
	seq  bigserial,
	data bytea NOT NULL,
	PRIMARY KEY (host, seq)
);
CREATE TABLE IF NOT EXISTS bombwatch_blocks (
	id         bigint PRIMARY KEY,
	host       text NOT NULL,
	rule       text NOT NULL,
	key_type   text NOT NULL,
	key        text NOT NULL,
	since      bigint NOT NULL,
	until      bigint,
	value      double precision NOT NULL,
	lim        double precision NOT NULL,
	win        bigint NOT NULL,
	actions    jsonb NOT NULL,
	ended      bigint,
	end_reason text NOT NULL DEFAULT '',
	file       text NOT NULL DEFAULT '',
	line       bigint NOT NULL DEFAULT 0,
	evidence   text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS bombwatch_blocks_active ON bombwatch_blocks (host) WHERE ended IS NULL;
ALTER TABLE bombwatch_blocks ADD COLUMN IF NOT EXISTS seen_on text NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS bombwatch_block_members (
	block bigint NOT NULL,
	addr  text NOT NULL,
	PRIMARY KEY (block, addr)
);
CREATE TABLE IF NOT EXISTS bombwatch_positions (
	host        text NOT NULL,
	input       text NOT NULL,
	device      bigint NOT NULL,
	inode       bigint NOT NULL,
	off         bigint NOT NULL,
	line        bigint NOT NULL,
	fingerprint bytea,
	counted     text NOT NULL DEFAULT '',
	PRIMARY KEY (host, input)
);
CREATE TABLE IF NOT EXISTS bombwatch_offenses (
	host  text NOT NULL,
	rule  text NOT NULL,
	key   text NOT NULL,
	count integer NOT NULL,
	last  bigint NOT NULL,
	PRIMARY KEY (host, rule, key)
);
CREATE TABLE IF NOT EXISTS bombwatch_stats (
	host         text NOT NULL,
	seq          bigserial,
	first_minute bigint NOT NULL,
	last_minute  bigint NOT NULL,
	data         bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS bombwatch_stats_minutes ON bombwatch_stats (host, last_minute);
CREATE TABLE IF NOT EXISTS bombwatch_files (
	host text NOT NULL,
	id   bigint NOT NULL,
	name text NOT NULL,
	PRIMARY KEY (host, id)
);
CREATE TABLE IF NOT EXISTS bombwatch_hosts (
	host text PRIMARY KEY,
	since bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS bombwatch_events (
	host text NOT NULL,
	seq  bigserial,
	at   bigint NOT NULL,
	data bytea NOT NULL,
	PRIMARY KEY (host, seq)
);
CREATE TABLE IF NOT EXISTS bombwatch_block_claims (
	rule     text NOT NULL,
	key_type text NOT NULL,
	key      text NOT NULL,
	since    bigint NOT NULL,
	id       bigint NOT NULL,
	PRIMARY KEY (rule, key_type, key, since)
);
CREATE TABLE IF NOT EXISTS bombwatch_block_actions (
	block  bigint NOT NULL,
	host   text NOT NULL,
	action text NOT NULL,
	status text NOT NULL,
	PRIMARY KEY (block, host, action)
);
ALTER TABLE bombwatch_blocks ADD COLUMN IF NOT EXISTS ended_on text NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS bombwatch_blocks_in_force ON bombwatch_blocks (id) WHERE ended IS NULL;
`

// unsavedClaim is how far apart a claim whose block was never saved and
// another of its key may start and be one block.
const unsavedClaim = 24 * time.Hour

// eventsKept is how long a host's published events are kept: how long a
// host may be down and still catch up with what the others saw.
const eventsKept = 24 * time.Hour

// Store is a state.Store in a PostgreSQL database.
type Store struct {
	db     *sql.DB
	host   string
	dsn    string // with the password hidden, for errors
	rawDSN string // for the listening connection
	gen    atomic.Int64
	pruned time.Time // when this host's old events were last dropped
	// timeout bounds each exchange with the server (see state.OpenOptions).
	timeout time.Duration
	// allHosts: Stats and the clock are every host's (state.OpenOptions).
	allHosts bool
	// closing is done when Close is called: exchanges under way end.
	closing   context.Context
	close     context.CancelFunc
	closeOnce sync.Once
	closeErr  error
	// A commit whose answer did not come may have been made all the same
	// (the server ran COMMIT, the answer was lost): the batch is tried
	// again with the token of its first try, which a commit writes in its
	// transaction (meta "batch:"+writer), so that a try finding it there
	// knows the batch saved and saves nothing twice. writer tells this
	// store's tries from those of another process of the host (`bans`).
	writer      string
	failedBatch *state.Batch
	failedToken int64

	// The notices: one connection LISTENs, from the first call to
	// Notices or BlockNotices until Close.
	listening sync.Once
	stop      context.CancelFunc
	stopped   chan struct{}
	mu        sync.Mutex
	hostWakes map[string]chan struct{}
	blockWake chan struct{}
}

var (
	_ state.Store  = (*Store)(nil)
	_ state.Reader = (*Store)(nil)
	_ state.Shared = (*Store)(nil)
)

func init() {
	state.Register("postgres", func(dsn string, o state.OpenOptions) (state.Store, error) {
		return Open(dsn, o)
	})
}

// Open connects to the database a DSN names and, unless o.ReadOnly, makes
// the tables that are missing. o.Host names this host's rows ("" is the
// machine's name).
func Open(dsn string, o state.OpenOptions) (*Store, error) {
	host := o.Host
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("state %s: this host's name: %w", state.Redact(dsn), err)
		}
		host = h
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", state.Redact(dsn), err)
	}
	s := &Store{db: db, host: host, dsn: state.Redact(dsn), rawDSN: dsn, timeout: cmp.Or(o.Timeout, DefaultTimeout), allHosts: o.AllHosts,
		writer:    fmt.Sprintf("batch:%d.%x", os.Getpid(), rand.Uint32()),
		hostWakes: map[string]chan struct{}{}, blockWake: make(chan struct{}, 1)}
	s.closing, s.close = context.WithCancel(context.Background())
	ctx, done := s.deadline(s.timeout)
	defer done()
	if !o.ReadOnly {
		if err := makeTables(ctx, db); err != nil {
			s.Close()
			return nil, s.wrap("make the tables", err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO bombwatch_hosts (host, since) VALUES ($1, $2) ON CONFLICT DO NOTHING`, host, time.Now().UnixNano()); err != nil {
			s.Close()
			return nil, s.wrap("add this host", err)
		}
	}
	var gen sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT value FROM bombwatch_meta WHERE host = $1 AND name = 'generation'`, host).Scan(&gen); err != nil && !errors.Is(err, sql.ErrNoRows) {
		s.Close()
		return nil, s.wrap("read generation", err)
	}
	s.gen.Store(gen.Int64)
	return s, nil
}

// schemaLock is the advisory lock under which the tables are made:
// CREATE TABLE IF NOT EXISTS is not safe against itself, and the hosts
// of a site start their daemons at once.
const schemaLock = 0x626f6d62 // "bomb"

func makeTables(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaLock); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return err
	}
	return tx.Commit()
}

// DefaultTimeout is how long the server may take to answer one exchange
// (a statement, or a commit of an ordinary batch) before the store says it
// is out of reach. A server that stops answering without refusing — a
// network that drops packets, a machine that hangs — would otherwise hold
// the daemon's reading, when it should go on alone.
const DefaultTimeout = 10 * time.Second

// loadTimeout bounds the reads of a whole state at start (windows,
// stats): they are long for a large state.
const loadTimeout = 10 * time.Minute

// commitRate is the bytes a second a commit's deadline allows for beyond
// the store's timeout: a full batch of millions of windows takes long.
const commitRate = 1 << 20

// deadline is the context of one exchange, done after d.
func (s *Store) deadline(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.closing, d)
}

func (s *Store) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("state %s: %s: %w", s.dsn, what, err)
}

// Close closes the connections. An exchange under way is given up: a
// daemon stopping while the server does not answer does not wait for its
// timeout.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.close()
		if s.stop != nil {
			s.stop()
			<-s.stopped
		}
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// Host is the name this host's rows are kept under.
func (s *Store) Host() string { return s.host }

// Generation counts the batches this host committed.
func (s *Store) Generation() int64 { return s.gen.Load() }

func (s *Store) meta(name string) (int64, error) { return s.metaOf(s.host, name) }

// metaOf is a host's meta value (0 when unset).
func (s *Store) metaOf(host, name string) (int64, error) {
	ctx, done := s.deadline(s.timeout)
	defer done()
	var v sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT value FROM bombwatch_meta WHERE host = $1 AND name = $2`, host, name).Scan(&v)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, s.wrap("read "+name, err)
	}
	return v.Int64, nil
}

func (s *Store) Load() (*state.Snapshot, error) {
	ctx, done := s.deadline(loadTimeout)
	defer done()
	snap := &state.Snapshot{Positions: map[string]state.Position{}}
	var err error
	if snap.Blocks, err = s.Blocks(true, time.Time{}); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT rule, key, count, last FROM bombwatch_offenses WHERE host = $1`, s.host)
	if err != nil {
		return nil, s.wrap("load offenses", err)
	}
	for rows.Next() {
		var o state.Offense
		var last int64
		if err := rows.Scan(&o.Rule, &o.Key, &o.Count, &last); err != nil {
			rows.Close()
			return nil, s.wrap("load offenses", err)
		}
		o.Last = time.Unix(0, last).UTC()
		snap.Offenses = append(snap.Offenses, o)
	}
	rows.Close()
	rows, err = s.db.QueryContext(ctx, `SELECT input, device, inode, off, line, fingerprint, counted FROM bombwatch_positions WHERE host = $1`, s.host)
	if err != nil {
		return nil, s.wrap("load positions", err)
	}
	for rows.Next() {
		var p state.Position
		var device, inode int64
		var counted string
		if err := rows.Scan(&p.Input, &device, &inode, &p.Offset, &p.Line, &p.Fingerprint, &counted); err != nil {
			rows.Close()
			return nil, s.wrap("load positions", err)
		}
		p.Device, p.Inode = uint64(device), uint64(inode)
		if counted != "" {
			p.Counted = strings.Split(counted, "\n")
		}
		snap.Positions[p.Input] = p
	}
	rows.Close()
	clock, err := s.meta("clock")
	if err != nil {
		return nil, err
	}
	if s.allHosts {
		// The newest event any host saw: a report of them all ends there.
		ctx, done := s.deadline(s.timeout)
		defer done()
		var newest sql.NullInt64
		if err := s.db.QueryRowContext(ctx, `SELECT MAX(value) FROM bombwatch_meta WHERE name = 'clock'`).Scan(&newest); err != nil {
			return nil, s.wrap("read clock", err)
		}
		clock = newest.Int64
	}
	if clock != 0 {
		snap.Clock = time.Unix(0, clock).UTC()
	}
	rows, err = s.db.QueryContext(ctx, `SELECT name FROM bombwatch_files WHERE host = $1 ORDER BY id`, s.host)
	if err != nil {
		return nil, s.wrap("load files", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, s.wrap("load files", err)
		}
		snap.Files = append(snap.Files, name)
	}
	return snap, s.wrap("load files", rows.Err())
}

// Windows hands back this host's windows as its batches saved them.
func (s *Store) Windows(fn func(*state.Window)) error {
	ctx, done := s.deadline(loadTimeout)
	defer done()
	rows, err := s.db.QueryContext(ctx, `SELECT seq, data FROM bombwatch_segments WHERE host = $1 ORDER BY seq`, s.host)
	if err != nil {
		return s.wrap("load windows", err)
	}
	defer rows.Close()
	var data []byte
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq, &data); err != nil {
			return s.wrap("load windows", err)
		}
		if err := state.DecodeChunk(data, fn); err != nil {
			return s.wrap(fmt.Sprintf("load windows of segment %d", seq), err)
		}
	}
	return s.wrap("load windows", rows.Err())
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// Commit writes a batch in one transaction. One the server aborted for
// a deadlock or a serialization failure — hosts writing the same blocks
// at once — is tried again at once, up to commitTries times. A batch that
// failed and is committed again (the same *Batch, before any other) is
// saved once, even when the first try was saved and only its answer lost.
func (s *Store) Commit(b *state.Batch) error {
	if b.Empty() {
		return nil
	}
	token := rand.Int64()
	if b == s.failedBatch {
		token = s.failedToken // tried again: it may have been saved
	}
	for try := 1; ; try++ {
		err := s.commit(b, token)
		if err == nil {
			s.failedBatch = nil
			return nil
		}
		var pgErr *pgconn.PgError
		if try == commitTries || !errors.As(err, &pgErr) || pgErr.Code != "40P01" && pgErr.Code != "40001" {
			s.failedBatch, s.failedToken = b, token
			return err
		}
	}
}

const commitTries = 5

func (s *Store) commit(b *state.Batch, token int64) error {
	size := len(b.Events) + b.Segment.Size() + b.Stats.Size()
	ctx, done := s.deadline(s.timeout + time.Duration(size/commitRate)*time.Second)
	defer done()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap("commit", err)
	}
	defer tx.Rollback()
	var last sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT value FROM bombwatch_meta WHERE host = $1 AND name = $2`, s.host, s.writer).Scan(&last); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return s.wrap("commit", err)
	}
	if last.Valid && last.Int64 == token {
		s.gen.Add(1)
		return nil // saved by the try whose answer was lost
	}
	if err := setMeta(ctx, tx, s.host, s.writer, token, "excluded.value"); err != nil {
		return s.wrap("commit", err)
	}
	if b.Full {
		if _, err := tx.ExecContext(ctx, `DELETE FROM bombwatch_segments WHERE host = $1`, s.host); err != nil {
			return s.wrap("commit windows", err)
		}
	}
	for _, chunk := range b.Segment.Chunks() {
		if _, err := tx.ExecContext(ctx, `INSERT INTO bombwatch_segments (host, data) VALUES ($1, $2)`, s.host, chunk); err != nil {
			return s.wrap("commit windows", err)
		}
	}
	if len(b.Files) > 0 {
		var n int64
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM bombwatch_files WHERE host = $1`, s.host).Scan(&n); err != nil {
			return s.wrap("commit files", err)
		}
		for i, name := range b.Files {
			if _, err := tx.ExecContext(ctx, `INSERT INTO bombwatch_files (host, id, name) VALUES ($1, $2, $3)`, s.host, n+int64(i)+1, name); err != nil {
				return s.wrap("commit files", err)
			}
		}
	}
	for _, bl := range b.Blocks {
		if bl.Actions == nil {
			bl.Actions = map[string]string{}
		}
		actions, err := json.Marshal(bl.Actions)
		if err != nil {
			return s.wrap("commit blocks", err)
		}
		evidence := ""
		if len(bl.Evidence) > 0 {
			e, err := json.Marshal(bl.Evidence)
			if err != nil {
				return s.wrap("commit blocks", err)
			}
			evidence = string(e)
		}
		// The first host to save a block writes it; another that decided
		// it too (the same ID, see ClaimBlock) adds its action outcomes.
		_, err = tx.ExecContext(ctx, `INSERT INTO bombwatch_blocks (id, host, rule, key_type, key, since, until, value, lim, win, actions, ended, end_reason, file, line, evidence, seen_on)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
			ON CONFLICT (id) DO NOTHING`,
			bl.ID, s.host, bl.Rule, bl.KeyType, bl.Key, bl.Since.UnixNano(), nullTime(bl.Until), bl.Value, bl.Limit,
			int64(bl.Window), string(actions), nullTime(bl.Ended), bl.EndReason, bl.File, bl.Line, evidence, bl.Host)
		if err != nil {
			return s.wrap("commit blocks", err)
		}
		for action, status := range bl.Actions {
			if err := setStatus(ctx, tx, bl.ID, s.host, action, status); err != nil {
				return s.wrap("commit blocks", err)
			}
		}
		// A block decided while the database was out of reach, or by
		// hand, claims its ID now: a host deciding it later gets this one.
		if _, err := tx.ExecContext(ctx, `INSERT INTO bombwatch_block_claims (rule, key_type, key, since, id) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
			bl.Rule, bl.KeyType, bl.Key, bl.Since.UnixNano(), bl.ID); err != nil {
			return s.wrap("commit blocks", err)
		}
	}
	// Members in one order, (block, address), whichever list they came
	// in: hosts adding the same members to the same blocks (a botnet's
	// network, seen everywhere) never wait on each other in a circle.
	var members []state.Member
	for _, bl := range b.Blocks {
		for _, m := range bl.Members {
			members = append(members, state.Member{ID: bl.ID, Addr: m})
		}
	}
	members = append(members, b.Members...)
	slices.SortFunc(members, func(x, y state.Member) int { return cmp.Or(cmp.Compare(x.ID, y.ID), strings.Compare(x.Addr, y.Addr)) })
	for i, m := range members {
		if i > 0 && m == members[i-1] {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO bombwatch_block_members (block, addr) VALUES ($1, $2) ON CONFLICT DO NOTHING`, m.ID, m.Addr); err != nil {
			return s.wrap("commit block members", err)
		}
	}
	if first, last, ok := b.Stats.Minutes(); ok {
		if _, err := tx.ExecContext(ctx, `INSERT INTO bombwatch_stats (host, first_minute, last_minute, data) VALUES ($1, $2, $3, $4)`,
			s.host, first, last, b.Stats.Encoded()); err != nil {
			return s.wrap("commit stats", err)
		}
	}
	if !b.PruneStats.IsZero() {
		cut := b.PruneStats.Unix() / 60
		if _, err := tx.ExecContext(ctx, `DELETE FROM bombwatch_stats WHERE host = $1 AND last_minute < $2`, s.host, cut); err != nil {
			return s.wrap("prune stats", err)
		}
		if err := setMeta(ctx, tx, s.host, "stats_pruned", cut, "GREATEST(bombwatch_meta.value, excluded.value)"); err != nil {
			return s.wrap("prune stats", err)
		}
	}
	for _, o := range b.Offenses {
		if _, err := tx.ExecContext(ctx, `INSERT INTO bombwatch_offenses (host, rule, key, count, last) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (host, rule, key) DO UPDATE SET count = $4, last = $5`, s.host, o.Rule, o.Key, o.Count, o.Last.UnixNano()); err != nil {
			return s.wrap("commit offenses", err)
		}
	}
	// By ID: hosts ending the same blocks lock their rows in one order,
	// never waiting on each other in a circle.
	ends := slices.SortedFunc(slices.Values(b.Ends), func(x, y state.End) int { return cmp.Compare(x.ID, y.ID) })
	for _, e := range ends {
		// The first end is the block's: hosts that lift it on time after
		// another did change nothing.
		if _, err := tx.ExecContext(ctx, `UPDATE bombwatch_blocks SET ended = $1, end_reason = $2, ended_on = $3 WHERE id = $4 AND ended IS NULL`,
			e.Time.UnixNano(), e.Reason, s.host, e.ID); err != nil {
			return s.wrap("commit block ends", err)
		}
	}
	if len(b.Events) > 0 {
		now := time.Now()
		if _, err := tx.ExecContext(ctx, `INSERT INTO bombwatch_events (host, at, data) VALUES ($1, $2, $3)`, s.host, now.UnixNano(), b.Events); err != nil {
			return s.wrap("publish events", err)
		}
		if now.Sub(s.pruned) >= time.Minute {
			if _, err := tx.ExecContext(ctx, `DELETE FROM bombwatch_events WHERE host = $1 AND at < $2`, s.host, now.Add(-eventsKept).UnixNano()); err != nil {
				return s.wrap("drop old events", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `SELECT pg_notify('bombwatch_events', $1)`, s.host); err != nil {
			return s.wrap("publish events", err)
		}
	}
	if len(b.Blocks) > 0 || len(b.Ends) > 0 || b.Manual {
		if err := setMeta(ctx, tx, "", "block_changes", 1, "bombwatch_meta.value + 1"); err != nil {
			return s.wrap("commit", err)
		}
		// A daemon ignores its own notices, but not those of `bans` run
		// on its host.
		who := s.host
		if b.Manual {
			who = "manual:" + s.host
		}
		if _, err := tx.ExecContext(ctx, `SELECT pg_notify('bombwatch_blocks', $1)`, who); err != nil {
			return s.wrap("commit", err)
		}
	}
	for _, p := range b.Positions {
		if _, err := tx.ExecContext(ctx, `INSERT INTO bombwatch_positions (host, input, device, inode, off, line, fingerprint, counted) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (host, input) DO UPDATE SET device = $3, inode = $4, off = $5, line = $6, fingerprint = $7, counted = $8`,
			s.host, p.Input, int64(p.Device), int64(p.Inode), p.Offset, p.Line, p.Fingerprint, strings.Join(p.Counted, "\n")); err != nil {
			return s.wrap("commit positions", err)
		}
	}
	if !b.Clock.IsZero() {
		if err := setMeta(ctx, tx, s.host, "clock", b.Clock.UnixNano(), "excluded.value"); err != nil {
			return s.wrap("commit clock", err)
		}
	}
	if b.Manual {
		if err := setMeta(ctx, tx, s.host, "manual", 1, "bombwatch_meta.value + 1"); err != nil {
			return s.wrap("commit", err)
		}
	}
	gen := s.gen.Load() + 1
	if err := setMeta(ctx, tx, s.host, "generation", gen, "excluded.value"); err != nil {
		return s.wrap("commit generation", err)
	}
	if err := tx.Commit(); err != nil {
		return s.wrap("commit", err)
	}
	s.gen.Store(gen)
	if len(b.Events) > 0 && time.Since(s.pruned) >= time.Minute {
		s.pruned = time.Now()
	}
	return nil
}

func setStatus(ctx context.Context, tx *sql.Tx, id int64, host, action, status string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO bombwatch_block_actions (block, host, action, status) VALUES ($1, $2, $3, $4)
		ON CONFLICT (block, host, action) DO UPDATE SET status = excluded.status`, id, host, action, status)
	return err
}

// setMeta sets a host's meta value: to value when new, else to update (an
// expression over bombwatch_meta.value and excluded.value).
func setMeta(ctx context.Context, tx *sql.Tx, host, name string, value int64, update string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO bombwatch_meta (host, name, value) VALUES ($1, $2, $3)
		ON CONFLICT (host, name) DO UPDATE SET value = `+update, host, name, value)
	return err
}

// ReserveIDs sets aside n block IDs, from one counter for every host
// (the meta row of host ""): two reserving at once get ranges that do not
// overlap.
func (s *Store) ReserveIDs(n int64) (int64, error) {
	ctx, done := s.deadline(s.timeout)
	defer done()
	var next int64
	err := s.db.QueryRowContext(ctx, `INSERT INTO bombwatch_meta (host, name, value)
			VALUES ('', 'next_block_id', (SELECT COALESCE(MAX(id), 0) + 1 FROM bombwatch_blocks) + $1)
		ON CONFLICT (host, name) DO UPDATE
			SET value = GREATEST(bombwatch_meta.value, (SELECT COALESCE(MAX(id), 0) + 1 FROM bombwatch_blocks)) + $1
		RETURNING value`, n).Scan(&next)
	if err != nil {
		return 0, s.wrap("reserve block IDs", err)
	}
	return next - n, nil
}

// ManualChanges counts the batches this host committed by hand.
func (s *Store) ManualChanges() (int64, error) { return s.meta("manual") }

// SetActionStatus records one action's outcome on a block, on this host.
func (s *Store) SetActionStatus(id int64, action, status string) error {
	ctx, done := s.deadline(s.timeout)
	defer done()
	_, err := s.db.ExecContext(ctx, `INSERT INTO bombwatch_block_actions (block, host, action, status) VALUES ($1, $2, $3, $4)
		ON CONFLICT (block, host, action) DO UPDATE SET status = excluded.status`, id, s.host, action, status)
	return s.wrap("set action status", err)
}

// Blocks returns the blocks in force, of every host, or with activeOnly
// false every one in force at some time after since. The statuses of
// their actions are this host's: pending where it has not acted yet.
func (s *Store) Blocks(activeOnly bool, since time.Time) ([]state.Block, error) {
	ctx, done := s.deadline(s.timeout)
	defer done()
	q := `SELECT id, rule, key_type, key, since, until, value, lim, win, actions::text,
			COALESCE((SELECT jsonb_object_agg(a.action, a.status) FROM bombwatch_block_actions a WHERE a.block = b.id AND a.host = $1), '{}')::text,
			ended, end_reason, ended_on, file, line, evidence, seen_on
		FROM bombwatch_blocks b WHERE `
	args := []any{s.host}
	if activeOnly {
		q += `ended IS NULL ORDER BY id`
	} else {
		q += `(ended IS NULL OR ended > $2) ORDER BY id`
		args = append(args, since.UnixNano())
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.wrap("read blocks", err)
	}
	defer rows.Close()
	var out []state.Block
	byID := map[int64]int{}
	for rows.Next() {
		var b state.Block
		var sinceNS, window int64
		var until, ended sql.NullInt64
		var actions, here, evidence string
		if err := rows.Scan(&b.ID, &b.Rule, &b.KeyType, &b.Key, &sinceNS, &until, &b.Value, &b.Limit, &window, &actions, &here,
			&ended, &b.EndReason, &b.EndedOn, &b.File, &b.Line, &evidence, &b.Host); err != nil {
			return nil, s.wrap("read blocks", err)
		}
		if evidence != "" {
			if err := json.Unmarshal([]byte(evidence), &b.Evidence); err != nil {
				return nil, s.wrap(fmt.Sprintf("read block %d evidence", b.ID), err)
			}
		}
		b.Since, b.Window = time.Unix(0, sinceNS).UTC(), time.Duration(window)
		if until.Valid {
			b.Until = time.Unix(0, until.Int64).UTC()
		}
		if ended.Valid {
			b.Ended = time.Unix(0, ended.Int64).UTC()
		}
		// The actions are those of the host that saved the block; their
		// statuses this host's.
		var statuses map[string]string
		if err := json.Unmarshal([]byte(actions), &b.Actions); err != nil {
			return nil, s.wrap(fmt.Sprintf("read block %d actions", b.ID), err)
		}
		if err := json.Unmarshal([]byte(here), &statuses); err != nil {
			return nil, s.wrap(fmt.Sprintf("read block %d actions", b.ID), err)
		}
		for name := range b.Actions {
			b.Actions[name] = state.Pending
		}
		for name, status := range statuses {
			b.Actions[name] = status
		}
		byID[b.ID] = len(out)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("read blocks", err)
	}
	rows.Close()
	if len(out) == 0 {
		return out, nil
	}
	mrows, err := s.db.QueryContext(ctx, `SELECT block, addr FROM bombwatch_block_members WHERE block >= $1 ORDER BY block, addr`, out[0].ID)
	if err != nil {
		return nil, s.wrap("read block members", err)
	}
	defer mrows.Close()
	for mrows.Next() {
		var id int64
		var addr string
		if err := mrows.Scan(&id, &addr); err != nil {
			return nil, s.wrap("read block members", err)
		}
		if i, ok := byID[id]; ok {
			out[i].Members = append(out[i].Members, addr)
		}
	}
	return out, s.wrap("read block members", mrows.Err())
}

// Stats calls fn for this host's stats of the minutes first to last, not
// pruned; a key's minute may come more than once: sum them.
func (s *Store) Stats(first, last int64, fn func(*state.Stat)) error {
	hosts := []string{s.host}
	if s.allHosts {
		others, err := s.Hosts()
		if err != nil {
			return err
		}
		hosts = append(hosts, others...)
	}
	ctx, done := s.deadline(loadTimeout)
	defer done()
	// Each host's stats are read in the order its batches saved them
	// (minute order within a batch), and the hosts' merged by minute: a
	// report sees a key's minutes in order whichever host saw them.
	type stream struct {
		rows  *sql.Rows
		first int64 // the host's stats pruned before it
		stats []state.Stat
		i     int
	}
	var live []*stream
	defer func() {
		for _, st := range live {
			st.rows.Close()
		}
	}()
	var data []byte
	// next makes st.stats[st.i] the stream's next stat; false at its end.
	next := func(st *stream) (bool, error) {
		for st.i >= len(st.stats) {
			if !st.rows.Next() {
				return false, st.rows.Err()
			}
			if err := st.rows.Scan(&data); err != nil {
				return false, err
			}
			st.stats, st.i = st.stats[:0], 0
			err := state.DecodeStats(data, func(x *state.Stat) {
				if x.Minute >= st.first && x.Minute <= last {
					st.stats = append(st.stats, *x)
				}
			})
			if err != nil {
				return false, err
			}
		}
		return true, nil
	}
	for _, h := range hosts {
		pruned, err := s.metaOf(h, "stats_pruned")
		if err != nil {
			return err
		}
		st := &stream{first: max(first, pruned)}
		if st.rows, err = s.db.QueryContext(ctx, `SELECT data FROM bombwatch_stats WHERE host = $1 AND last_minute >= $2 AND first_minute <= $3 ORDER BY seq`,
			h, st.first, last); err != nil {
			return s.wrap("read stats", err)
		}
		live = append(live, st)
		if ok, err := next(st); err != nil {
			return s.wrap("read stats", err)
		} else if !ok {
			live = live[:len(live)-1]
			st.rows.Close()
		}
	}
	for len(live) > 0 {
		best := 0
		for j, st := range live {
			if st.stats[st.i].Minute < live[best].stats[live[best].i].Minute {
				best = j
			}
		}
		st := live[best]
		fn(&st.stats[st.i])
		st.i++
		if ok, err := next(st); err != nil {
			return s.wrap("read stats", err)
		} else if !ok {
			st.rows.Close()
			live = slices.Delete(live, best, best+1)
		}
	}
	return nil
}

// Hosts are the other hosts that opened the database to write to it.
func (s *Store) Hosts() ([]string, error) {
	ctx, done := s.deadline(s.timeout)
	defer done()
	rows, err := s.db.QueryContext(ctx, `SELECT host FROM bombwatch_hosts WHERE host <> $1 ORDER BY host`, s.host)
	if err != nil {
		return nil, s.wrap("read hosts", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, s.wrap("read hosts", err)
		}
		out = append(out, h)
	}
	return out, s.wrap("read hosts", rows.Err())
}

// eventRuns is how many runs of events one read takes at most: a host
// catching up reads a day's in steps.
const eventRuns = 64

// Events calls fn with the runs of events host published, from the one
// numbered from on. A host commits one batch at a time, so its runs are
// numbered in the order they were committed: none is ever found later
// below one read.
func (s *Store) Events(host string, from int64, fn func(seq int64, events []byte) error) error {
	type run struct {
		seq  int64
		data []byte
	}
	runs := make([]run, 0, eventRuns)
	for {
		// Read first, then handed on: fn may wait for the reader, and the
		// server's answer may not.
		runs = runs[:0]
		err := func() error {
			ctx, done := s.deadline(s.timeout)
			defer done()
			rows, err := s.db.QueryContext(ctx, `SELECT seq, data FROM bombwatch_events WHERE host = $1 AND seq >= $2 ORDER BY seq LIMIT $3`, host, from, eventRuns)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var r run
				if err := rows.Scan(&r.seq, &r.data); err != nil {
					return err
				}
				runs = append(runs, r)
			}
			return rows.Err()
		}()
		if err != nil {
			return s.wrap("read "+host+"'s events", err)
		}
		for _, r := range runs {
			from = r.seq + 1
			if err := fn(r.seq, r.data); err != nil {
				return err
			}
		}
		if len(runs) < eventRuns {
			return nil
		}
	}
}

// ClaimBlock returns the ID of the block of rule and key from since: the
// block of the key that another host claimed, if since is in its life —
// from a window before its start to its end — or it is not saved yet (its
// host is saving it, or died first; within unsavedClaim), or else id,
// which the caller reserved (ReserveIDs). Hosts see an event late when
// one of them was down, so two may see the limit crossed at different
// events, earlier or later; it is one block all the same.
// Claims of one key are made one at a time (an advisory lock of the
// transaction), so two hosts claiming at once get one ID.
func (s *Store) ClaimBlock(rule, keyType, key string, since time.Time, id int64) (int64, error) {
	ctx, done := s.deadline(s.timeout)
	defer done()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, s.wrap("claim block", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2 || ' ' || $3))`, rule, keyType, key); err != nil {
		return 0, s.wrap("claim block", err)
	}
	var claimed int64
	err = tx.QueryRowContext(ctx, `SELECT c.id FROM bombwatch_block_claims c LEFT JOIN bombwatch_blocks b ON b.id = c.id
		WHERE c.rule = $1 AND c.key_type = $2 AND c.key = $3
			AND (c.since = $4
				OR b.id IS NULL AND c.since BETWEEN $4 - $5 AND $4 + $5
				OR $4 >= b.since - b.win AND $4 < COALESCE(b.ended, b.until, 9223372036854775807))
		ORDER BY c.since DESC LIMIT 1`, rule, keyType, key, since.UnixNano(), int64(unsavedClaim)).Scan(&claimed)
	if err == nil {
		return claimed, s.wrap("claim block", tx.Commit())
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, s.wrap("claim block", err)
	}
	// A host saving a block it did not claim (decided while the database
	// was out of reach, or at another event than the one claimed) writes
	// its claim without the lock: then that one is the block.
	err = tx.QueryRowContext(ctx, `INSERT INTO bombwatch_block_claims (rule, key_type, key, since, id) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (rule, key_type, key, since) DO UPDATE SET id = bombwatch_block_claims.id RETURNING id`,
		rule, keyType, key, since.UnixNano(), id).Scan(&claimed)
	if err != nil {
		return 0, s.wrap("claim block", err)
	}
	return claimed, s.wrap("claim block", tx.Commit())
}

// BlockChanges counts the commits of any host that changed blocks.
func (s *Store) BlockChanges() (int64, error) {
	ctx, done := s.deadline(s.timeout)
	defer done()
	var v sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT value FROM bombwatch_meta WHERE host = '' AND name = 'block_changes'`).Scan(&v)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, s.wrap("read block changes", err)
	}
	return v.Int64, nil
}

// Notices receives when host publishes events.
func (s *Store) Notices(host string) <-chan struct{} {
	s.listening.Do(s.startListening)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.hostWakes[host]
	if c == nil {
		c = make(chan struct{}, 1)
		s.hostWakes[host] = c
	}
	return c
}

// BlockNotices receives when another host, or `bans` on this one,
// changes blocks.
func (s *Store) BlockNotices() <-chan struct{} {
	s.listening.Do(s.startListening)
	return s.blockWake
}

func (s *Store) startListening() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stop, s.stopped = cancel, make(chan struct{})
	go s.listen(ctx)
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// wakeAll wakes every reader: after a lost connection, notices may have
// been missed.
func (s *Store) wakeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.hostWakes {
		wake(c)
	}
	wake(s.blockWake)
}

// listen holds one connection that LISTENs, and connects again when it
// is lost, until ctx is done. A connection silent for listenCheck is asked
// whether the server is still there: one whose server stopped answering,
// or whose network dropped it, is never told so.
func (s *Store) listen(ctx context.Context) {
	defer close(s.stopped)
	for ctx.Err() == nil {
		connectCtx, done := context.WithTimeout(ctx, s.timeout)
		conn, err := pgx.Connect(connectCtx, s.rawDSN)
		if err == nil {
			if _, err = conn.Exec(connectCtx, `LISTEN bombwatch_events; LISTEN bombwatch_blocks`); err == nil {
				s.wakeAll()
				s.notices(ctx, conn)
			}
			conn.Close(context.Background())
		}
		done()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// listenCheck is how long the listening connection may be silent before
// the server is asked whether it is there.
var listenCheck = 30 * time.Second

// notices wakes the readers of the notices conn receives, until ctx is
// done or conn is lost.
func (s *Store) notices(ctx context.Context, conn *pgx.Conn) {
	for {
		waitCtx, done := context.WithTimeout(ctx, listenCheck)
		n, err := conn.WaitForNotification(waitCtx)
		done()
		if err != nil {
			if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err) {
				return
			}
			pingCtx, done := context.WithTimeout(ctx, s.timeout)
			err := conn.Ping(pingCtx)
			done()
			if err != nil {
				return
			}
			continue
		}
		switch {
		case n.Channel == "bombwatch_blocks" && n.Payload != s.host:
			wake(s.blockWake)
		case n.Channel == "bombwatch_events" && n.Payload != s.host:
			s.mu.Lock()
			if c := s.hostWakes[n.Payload]; c != nil {
				wake(c)
			}
			s.mu.Unlock()
		}
	}
}
