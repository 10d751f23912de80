// Package sqlite is bombwatch's embedded state store: one SQLite file in WAL
// mode, with a versioned schema migrated at open.
//
// Writes come in batches (state.Batch), one transaction each, so that the
// input positions and the window state and blocks they produced are saved
// together: a crash loses a whole batch or nothing, never half of one.
package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/bombwatch/bombwatch/internal/safefile"
	"github.com/bombwatch/bombwatch/state"
)

// migrations are applied in order; PRAGMA user_version counts those done.
// Append only: a released migration is never edited.
var migrations = []string{
	`CREATE TABLE windows (
		rule  TEXT NOT NULL,
		key   TEXT NOT NULL,
		times BLOB NOT NULL, -- varint Unix ns of the first event, then uvarint gaps
		PRIMARY KEY (rule, key)
	) WITHOUT ROWID;
	CREATE TABLE blocks (
		id         INTEGER PRIMARY KEY,
		rule       TEXT NOT NULL,
		key_type   TEXT NOT NULL,
		key        TEXT NOT NULL,
		since      INTEGER NOT NULL, -- Unix ns
		until      INTEGER,          -- Unix ns; NULL: no end by time
		value      REAL NOT NULL,
		lim        REAL NOT NULL,
		window     INTEGER NOT NULL, -- ns
		actions    TEXT NOT NULL,    -- JSON: action name → status
		ended      INTEGER,          -- Unix ns; NULL while in force
		end_reason TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX blocks_active ON blocks (ended) WHERE ended IS NULL;
	CREATE INDEX blocks_since ON blocks (since);
	CREATE TABLE positions (
		input       TEXT PRIMARY KEY,
		device      INTEGER NOT NULL,
		inode       INTEGER NOT NULL,
		offset      INTEGER NOT NULL,
		line        INTEGER NOT NULL,
		fingerprint BLOB
	);
	CREATE TABLE meta (
		name  TEXT PRIMARY KEY,
		value TEXT NOT NULL
	);`,
	// Windows with amounts, dates and forgiveness; escalation's offenses.
	// Window contents last one window: dropping the old ones costs at most
	// the counts of one window after the upgrade.
	`DROP TABLE windows;
	CREATE TABLE windows (
		rule TEXT NOT NULL, -- "rule/0", "rule/burst"
		key  TEXT NOT NULL,
		data BLOB NOT NULL, -- see encodeWindow
		PRIMARY KEY (rule, key)
	) WITHOUT ROWID;
	CREATE TABLE offenses (
		rule  TEXT NOT NULL,
		key   TEXT NOT NULL,
		count INTEGER NOT NULL,
		last  INTEGER NOT NULL, -- Unix ns
		PRIMARY KEY (rule, key)
	) WITHOUT ROWID;`,
	// What reports need: per-minute counts, a batch's in one row (a key's
	// minute may be in several rows, summed when read: a row per count
	// would cost SQLite more than all the rest of a replay), and where
	// blocks came from.
	`CREATE TABLE stats (
		first_minute INTEGER NOT NULL, -- Unix time / 60
		last_minute  INTEGER NOT NULL,
		data         BLOB NOT NULL     -- see state.Stats
	);
	ALTER TABLE blocks ADD COLUMN file TEXT NOT NULL DEFAULT '';
	ALTER TABLE blocks ADD COLUMN line INTEGER NOT NULL DEFAULT 0;`,
	// The client addresses a block is enforced on, when its rule enforces
	// on clients.
	`CREATE TABLE block_members (
		block INTEGER NOT NULL,
		addr  TEXT NOT NULL,
		PRIMARY KEY (block, addr)
	) WITHOUT ROWID;`,
	// What a parser counted and the log may name again (Postfix's queue
	// IDs of messages not yet removed), one per line, with the position.
	`ALTER TABLE positions ADD COLUMN counted TEXT NOT NULL DEFAULT '';`,
	// What a block's rule counted (JSON, see state.Evidence), and the log
	// file names windows' tags refer to, by id.
	`ALTER TABLE blocks ADD COLUMN evidence TEXT NOT NULL DEFAULT '';
	CREATE TABLE files (
		id   INTEGER PRIMARY KEY, -- a tag's file, from 1
		name TEXT NOT NULL
	);`,
	// Windows as the batches saved them, a chunk of thousands a row (see
	// state.Segment), read back in order; the windows table's rows, of
	// before, are read first, until a full batch replaces them all.
	`CREATE TABLE segments (
		seq  INTEGER PRIMARY KEY,
		data BLOB NOT NULL
	);`,
	// Where a block's crossing event was seen (state.Block.Host).
	`ALTER TABLE blocks ADD COLUMN host TEXT NOT NULL DEFAULT '';`,
}

// Store is a state.Store in an SQLite file.
type Store struct {
	db   *sql.DB
	path string
	gen  atomic.Int64 // see Generation
}

var (
	_ state.Store  = (*Store)(nil)
	_ state.Reader = (*Store)(nil)
)

// SQLite is the embedded store: "sqlite:PATH", or a plain path, in a
// state DSN (state.Open).
func init() {
	state.Register("sqlite", func(path string, o state.OpenOptions) (state.Store, error) {
		if o.ReadOnly {
			return OpenReadOnly(path)
		}
		return Open(path)
	})
}

// Open opens or creates the database at path and brings its schema up to
// date.
func Open(path string) (*Store, error) {
	// A state being made by another process at this moment (run, and
	// `bans ban` beside it, at the very first start) is locked while it
	// switches to WAL and migrates: opened again once it is, for up to the
	// busy timeout.
	deadline := time.Now().Add(busyTimeout)
	for {
		s, err := open(path)
		var se sqlite3.Error
		if err == nil || !errors.As(err, &se) || se.Code != sqlite3.ErrBusy && se.Code != sqlite3.ErrLocked || time.Now().After(deadline) {
			return s, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// busyTimeout is how long a statement waits for a lock another process
// holds (_busy_timeout in the DSNs).
const busyTimeout = 5 * time.Second

func open(path string) (*Store, error) {
	// A new database is made 0640, never through a link: bombwatch runs as
	// root, and the state names who was blocked.
	if err := safefile.Create(path, 0o640); err != nil {
		return nil, fmt.Errorf("open state database: %w", err)
	}
	// Looked at before anything is set: WAL mode is written into the
	// file, and a file that is not bombwatch's is left as it was.
	if check, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000"); err == nil {
		_, err = (&Store{db: check, path: path}).version()
		check.Close()
		if err != nil {
			return nil, err
		}
	}
	dsn := "file:" + path + "?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	// One connection: SQLite has one writer anyway, and this serialises the
	// action-status updates with the batch commits instead of failing them
	// with "database is locked".
	db.SetMaxOpenConns(1)
	s := &Store{db: db, path: path}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, err
	}
	var gen sql.NullInt64
	err = db.QueryRow(`SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'generation'`).Scan(&gen)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		db.Close()
		return nil, s.wrap("read generation", err)
	}
	s.gen.Store(gen.Int64)
	return s, nil
}

// OpenReadOnly opens an existing database for reading only, as the
// commands that only read it (report, explain, bans list) do: it is never
// created or migrated, so a typo in --db is an error, not a new file, and
// a user who may read the state but not write it can run them from cron.
func OpenReadOnly(path string) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("state database: %w", err)
	}
	var firstErr error
	// A WAL database whose -shm cannot be made (a read-only mount) opens
	// as immutable: nothing writes it there anyway.
	for _, mode := range []string{"mode=ro", "mode=ro&immutable=1"} {
		db, err := sql.Open("sqlite3", "file:"+path+"?"+mode+"&_busy_timeout=5000")
		if err != nil {
			return nil, fmt.Errorf("open state database %s: %w", path, err)
		}
		db.SetMaxOpenConns(1)
		s := &Store{db: db, path: path}
		version, err := s.version()
		if err != nil {
			db.Close()
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		if version != len(migrations) {
			db.Close()
			return nil, fmt.Errorf("state database %s has schema version %d and this bombwatch reads version %d: run `bombwatch run` or `bombwatch replay --db` on it once to bring it up to date", path, version, len(migrations))
		}
		return s, nil
	}
	return nil, firstErr
}

// version reads the schema version, and refuses a database that holds
// tables of someone else's: it is not bombwatch's to migrate.
func (s *Store) version() (int, error) {
	// One statement, one snapshot: read apart, the version could be 0 and
	// the tables those another process's migration made meanwhile.
	var version, tables int
	err := s.db.QueryRow(`SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master WHERE type = 'table')`).Scan(&version, &tables)
	if err != nil {
		return 0, fmt.Errorf("state database %s: read schema version: %w", s.path, err)
	}
	if version == 0 && tables > 0 {
		return 0, fmt.Errorf("state database %s: a SQLite file with tables that are not bombwatch's: refusing to use it", s.path)
	}
	return version, nil
}

func (s *Store) migrate() error {
	version, err := s.version()
	if err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("state database %s has schema version %d, newer than this bombwatch knows (%d): use a newer bombwatch", s.path, version, len(migrations))
	}
	if version == len(migrations) {
		return nil
	}
	// Each step holds the write lock from its start (BEGIN IMMEDIATE) and
	// reads the version again under it: two processes opening a new state
	// at once (run and `bans ban`) each read version 0, and the second to
	// create the tables failed, "table offenses already exists". Now it
	// waits for the first (the busy timeout) and finds the step done.
	ctx := context.Background()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("state database %s: %w", s.path, err)
	}
	defer conn.Close()
	step := func() (done bool, err error) {
		if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
			return false, err
		}
		defer func() {
			if err != nil {
				conn.ExecContext(ctx, `ROLLBACK`)
			}
		}()
		var v int
		if err := conn.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
			return false, err
		}
		if v >= len(migrations) {
			_, err := conn.ExecContext(ctx, `COMMIT`)
			return true, err
		}
		if _, err := conn.ExecContext(ctx, migrations[v]); err != nil {
			return false, fmt.Errorf("migrate to version %d: %w", v+1, err)
		}
		if _, err := conn.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, v+1)); err != nil {
			return false, fmt.Errorf("migrate to version %d: %w", v+1, err)
		}
		_, err = conn.ExecContext(ctx, `COMMIT`)
		return false, err
	}
	for {
		done, err := step()
		if err != nil {
			return fmt.Errorf("state database %s: %w", s.path, err)
		}
		if done {
			return nil
		}
	}
}

// addStats saves a batch's stats as one row.
func addStats(tx *sql.Tx, stats *state.Stats) error {
	first, last, ok := stats.Minutes()
	if !ok {
		return nil
	}
	_, err := tx.Exec(`INSERT INTO stats (first_minute, last_minute, data) VALUES (?, ?, ?)`, first, last, stats.Encoded())
	return err
}

// Stats calls fn for every stat of the minutes from first to last, both
// included, and not pruned. A key's minute may come more than once: sum
// them.
func (s *Store) Stats(first, last int64, fn func(*state.Stat)) error {
	// A batch's row spans its minutes: pruning drops whole rows, and the
	// minutes before the cut that a row kept are not handed on.
	var pruned sql.NullInt64
	if err := s.db.QueryRow(`SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'stats_pruned'`).Scan(&pruned); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return s.wrap("read stats", err)
	}
	if pruned.Valid {
		first = max(first, pruned.Int64)
	}
	inRange := fn
	fn = func(st *state.Stat) {
		if st.Minute >= first && st.Minute <= last {
			inRange(st)
		}
	}
	rows, err := s.db.Query(`SELECT data FROM stats WHERE last_minute >= ? AND first_minute <= ?`, first, last)
	if err != nil {
		return s.wrap("read stats", err)
	}
	defer rows.Close()
	for rows.Next() {
		var blob []byte
		if err := rows.Scan(&blob); err != nil {
			return s.wrap("read stats", err)
		}
		err := state.DecodeStats(blob, func(st *state.Stat) {
			if st.Minute >= first && st.Minute <= last {
				fn(st)
			}
		})
		if err != nil {
			return s.wrap("read stats", err)
		}
	}
	return s.wrap("read stats", rows.Err())
}

// DB is the database, for reports' queries.
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Load reads the whole state.
func (s *Store) Load() (*state.Snapshot, error) {
	snap := &state.Snapshot{Positions: map[string]state.Position{}}
	var err error
	if snap.Blocks, err = s.Blocks(true, time.Time{}); err != nil {
		return nil, err
	}
	orow, err := s.db.Query(`SELECT rule, key, count, last FROM offenses`)
	if err != nil {
		return nil, s.wrap("load offenses", err)
	}
	for orow.Next() {
		var o state.Offense
		var last int64
		if err := orow.Scan(&o.Rule, &o.Key, &o.Count, &last); err != nil {
			orow.Close()
			return nil, s.wrap("load offenses", err)
		}
		o.Last = time.Unix(0, last).UTC()
		snap.Offenses = append(snap.Offenses, o)
	}
	orow.Close()
	prow, err := s.db.Query(`SELECT input, device, inode, offset, line, fingerprint, counted FROM positions`)
	if err != nil {
		return nil, s.wrap("load positions", err)
	}
	for prow.Next() {
		var p state.Position
		var counted string
		if err := prow.Scan(&p.Input, &p.Device, &p.Inode, &p.Offset, &p.Line, &p.Fingerprint, &counted); err != nil {
			prow.Close()
			return nil, s.wrap("load positions", err)
		}
		if counted != "" {
			p.Counted = strings.Split(counted, "\n")
		}
		snap.Positions[p.Input] = p
	}
	prow.Close()
	var clock sql.NullInt64
	err = s.db.QueryRow(`SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'clock'`).Scan(&clock)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, s.wrap("load clock", err)
	}
	if clock.Valid {
		snap.Clock = time.Unix(0, clock.Int64).UTC()
	}
	frow, err := s.db.Query(`SELECT name FROM files ORDER BY id`)
	if err != nil {
		return nil, s.wrap("load files", err)
	}
	defer frow.Close()
	for frow.Next() {
		var name string
		if err := frow.Scan(&name); err != nil {
			return nil, s.wrap("load files", err)
		}
		snap.Files = append(snap.Files, name)
	}
	return snap, s.wrap("load files", frow.Err())
}

// Generation counts the batches committed to this database, over its
// life: a state that counts fewer than a marker kept beside it lost its
// last commits (its -wal file removed, or the file restored from a
// backup).
func (s *Store) Generation() int64 { return s.gen.Load() }

// Windows streams the saved windows.
func (s *Store) Windows(fn func(*state.Window)) error {
	// The rows of a state saved before segments, each window once.
	rows, err := s.db.Query(`SELECT rule, key, data FROM windows`)
	if err != nil {
		return s.wrap("load windows", err)
	}
	defer rows.Close()
	var w state.Window
	var rule string
	var ruleBytes, blob sql.RawBytes
	var key string
	for rows.Next() {
		if err := rows.Scan(&ruleBytes, &key, &blob); err != nil {
			return s.wrap("load windows", err)
		}
		if string(ruleBytes) != rule { // rows come sorted by rule: one string each
			rule = string(ruleBytes)
		}
		w = state.Window{Rule: rule, Key: key, Times: w.Times[:0]}
		if err := state.DecodeWindow(blob, &w); err != nil {
			return s.wrap("load window of "+rule+" "+key, err)
		}
		fn(&w)
	}
	if err := rows.Err(); err != nil {
		return s.wrap("load windows", err)
	}
	rows.Close()
	// Then the segments, in the order committed: read on one goroutine
	// while the chunk before is decoded on the caller's. A chunk is copied
	// out of the row into a buffer a decoded chunk gave back: copies into
	// new memory (page faults, then the collector) were half the reading
	// of millions of keys.
	type chunk struct {
		seq  int64
		data []byte
	}
	chunks, stop := make(chan chunk, 4), make(chan struct{})
	free := make(chan []byte, cap(chunks)+2)
	var readErr error
	go func() {
		defer close(chunks)
		segs, err := s.db.Query(`SELECT seq, data FROM segments ORDER BY seq`)
		if err != nil {
			readErr = err
			return
		}
		defer segs.Close()
		for segs.Next() {
			var c chunk
			var row sql.RawBytes // the driver's, until Next
			if err := segs.Scan(&c.seq, &row); err != nil {
				readErr = err
				return
			}
			select {
			case c.data = <-free:
			default:
			}
			c.data = append(c.data[:0], row...)
			select {
			case chunks <- c:
			case <-stop:
				return
			}
		}
		readErr = segs.Err()
	}()
	defer func() {
		close(stop)
		for range chunks { // until the reader is done with the connection
		}
	}()
	for c := range chunks {
		if err := state.DecodeChunk(c.data, fn); err != nil {
			return s.wrap(fmt.Sprintf("load windows of segment %d", c.seq), err)
		}
		select {
		case free <- c.data:
		default:
		}
	}
	return s.wrap("load windows", readErr)
}

// Commit writes a batch in one transaction.
func (s *Store) Commit(b *state.Batch) error {
	if b.Empty() {
		return nil
	}
	tx, err := s.db.Begin()
	if err != nil {
		return s.wrap("commit", err)
	}
	defer tx.Rollback()
	if b.Full {
		// Every window kept is in this batch: what was saved before goes.
		if _, err := tx.Exec(`DELETE FROM segments; DELETE FROM windows`); err != nil {
			return s.wrap("commit windows", err)
		}
	}
	for _, chunk := range b.Segment.Chunks() {
		if _, err := tx.Exec(`INSERT INTO segments (data) VALUES (?)`, chunk); err != nil {
			return s.wrap("commit windows", err)
		}
	}
	for _, name := range b.Files {
		if _, err := tx.Exec(`INSERT INTO files (name) VALUES (?)`, name); err != nil {
			return s.wrap("commit files", err)
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
		_, err = tx.Exec(`INSERT OR REPLACE INTO blocks (id, rule, key_type, key, since, until, value, lim, window, actions, ended, end_reason, file, line, evidence, host)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			bl.ID, bl.Rule, bl.KeyType, bl.Key, bl.Since.UnixNano(), nullTime(bl.Until), bl.Value, bl.Limit,
			int64(bl.Window), string(actions), nullTime(bl.Ended), bl.EndReason, bl.File, bl.Line, evidence, bl.Host)
		if err != nil {
			return s.wrap("commit blocks", err)
		}
		for _, m := range bl.Members {
			if _, err := tx.Exec(`INSERT OR IGNORE INTO block_members (block, addr) VALUES (?, ?)`, bl.ID, m); err != nil {
				return s.wrap("commit block members", err)
			}
		}
	}
	for _, m := range b.Members {
		if _, err := tx.Exec(`INSERT OR IGNORE INTO block_members (block, addr) VALUES (?, ?)`, m.ID, m.Addr); err != nil {
			return s.wrap("commit block members", err)
		}
	}
	if err := addStats(tx, &b.Stats); err != nil {
		return s.wrap("commit stats", err)
	}
	if !b.PruneStats.IsZero() {
		if _, err := tx.Exec(`DELETE FROM stats WHERE last_minute < ?`, b.PruneStats.Unix()/60); err != nil {
			return s.wrap("prune stats", err)
		}
		if _, err := tx.Exec(`INSERT INTO meta (name, value) VALUES ('stats_pruned', ?)
			ON CONFLICT (name) DO UPDATE SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))`, b.PruneStats.Unix()/60); err != nil {
			return s.wrap("prune stats", err)
		}
	}
	for _, o := range b.Offenses {
		if _, err := tx.Exec(`INSERT OR REPLACE INTO offenses (rule, key, count, last) VALUES (?, ?, ?, ?)`, o.Rule, o.Key, o.Count, o.Last.UnixNano()); err != nil {
			return s.wrap("commit offenses", err)
		}
	}
	for _, e := range b.Ends {
		if _, err := tx.Exec(`UPDATE blocks SET ended = ?, end_reason = ? WHERE id = ?`, e.Time.UnixNano(), e.Reason, e.ID); err != nil {
			return s.wrap("commit block ends", err)
		}
	}
	for _, p := range b.Positions {
		_, err := tx.Exec(`INSERT OR REPLACE INTO positions (input, device, inode, offset, line, fingerprint, counted) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			p.Input, int64(p.Device), int64(p.Inode), p.Offset, p.Line, p.Fingerprint, strings.Join(p.Counted, "\n"))
		if err != nil {
			return s.wrap("commit positions", err)
		}
	}
	if !b.Clock.IsZero() {
		if _, err := tx.Exec(`INSERT OR REPLACE INTO meta (name, value) VALUES ('clock', ?)`, b.Clock.UnixNano()); err != nil {
			return s.wrap("commit clock", err)
		}
	}
	if b.Manual {
		if _, err := tx.Exec(`INSERT INTO meta (name, value) VALUES ('manual', 1)
			ON CONFLICT (name) DO UPDATE SET value = CAST(value AS INTEGER) + 1`); err != nil {
			return s.wrap("commit", err)
		}
	}
	gen := s.gen.Load() + 1
	if _, err := tx.Exec(`INSERT OR REPLACE INTO meta (name, value) VALUES ('generation', ?)`, gen); err != nil {
		return s.wrap("commit generation", err)
	}
	if err := tx.Commit(); err != nil {
		return s.wrap("commit", err)
	}
	s.gen.Store(gen)
	return nil
}

// ReserveIDs sets aside n block IDs, in one statement: two processes
// reserving at once get ranges that do not overlap. IDs of blocks saved
// before the counter existed are skipped too.
func (s *Store) ReserveIDs(n int64) (int64, error) {
	var next int64
	err := s.db.QueryRow(`INSERT INTO meta (name, value) VALUES ('next_block_id', (SELECT COALESCE(MAX(id), 0) + 1 FROM blocks) + ?1)
		ON CONFLICT (name) DO UPDATE SET value = MAX(CAST(value AS INTEGER), (SELECT COALESCE(MAX(id), 0) + 1 FROM blocks)) + ?1
		RETURNING CAST(value AS INTEGER)`, n).Scan(&next)
	if err != nil {
		return 0, s.wrap("reserve block IDs", err)
	}
	return next - n, nil
}

// ManualChanges counts the batches committed by hand (state.Batch.Manual).
func (s *Store) ManualChanges() (int64, error) {
	var n sql.NullInt64
	err := s.db.QueryRow(`SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'manual'`).Scan(&n)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, s.wrap("read manual changes", err)
	}
	return n.Int64, nil
}

// SetActionStatus records one action's outcome on a block.
func (s *Store) SetActionStatus(id int64, action, status string) error {
	_, err := s.db.Exec(`UPDATE blocks SET actions = json_set(actions, '$.' || json_quote(?), ?) WHERE id = ?`, action, status, id)
	return s.wrap("set action status", err)
}

// Blocks returns the blocks in force, or with activeOnly false every block
// in force at some time after since.
func (s *Store) Blocks(activeOnly bool, since time.Time) ([]state.Block, error) {
	q := `SELECT id, rule, key_type, key, since, until, value, lim, window, actions, ended, end_reason, file, line, evidence, host FROM blocks `
	var args []any
	if activeOnly {
		q += `WHERE ended IS NULL ORDER BY id`
	} else {
		q += `WHERE ended IS NULL OR ended > ? ORDER BY id`
		args = append(args, since.UnixNano())
	}
	rows, err := s.db.Query(q, args...)
	if err != nil {
		return nil, s.wrap("read blocks", err)
	}
	defer rows.Close()
	var out []state.Block
	for rows.Next() {
		var b state.Block
		var sinceNS, window int64
		var until, ended sql.NullInt64
		var actions, evidence string
		if err := rows.Scan(&b.ID, &b.Rule, &b.KeyType, &b.Key, &sinceNS, &until, &b.Value, &b.Limit, &window, &actions, &ended, &b.EndReason, &b.File, &b.Line, &evidence, &b.Host); err != nil {
			return nil, s.wrap("read blocks", err)
		}
		if evidence != "" {
			if err := json.Unmarshal([]byte(evidence), &b.Evidence); err != nil {
				return nil, s.wrap(fmt.Sprintf("read block %d evidence", b.ID), err)
			}
		}
		b.Since = time.Unix(0, sinceNS).UTC()
		b.Window = time.Duration(window)
		if until.Valid {
			b.Until = time.Unix(0, until.Int64).UTC()
		}
		if ended.Valid {
			b.Ended = time.Unix(0, ended.Int64).UTC()
		}
		if err := json.Unmarshal([]byte(actions), &b.Actions); err != nil {
			return nil, s.wrap(fmt.Sprintf("read block %d actions", b.ID), err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("read blocks", err)
	}
	return out, s.readMembers(out)
}

// readMembers fills in the members of blocks.
func (s *Store) readMembers(blocks []state.Block) error {
	if len(blocks) == 0 {
		return nil
	}
	byID := make(map[int64]*state.Block, len(blocks))
	for i := range blocks {
		byID[blocks[i].ID] = &blocks[i]
	}
	rows, err := s.db.Query(`SELECT block, addr FROM block_members WHERE block >= ? ORDER BY block, addr`, blocks[0].ID)
	if err != nil {
		return s.wrap("read block members", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var addr string
		if err := rows.Scan(&id, &addr); err != nil {
			return s.wrap("read block members", err)
		}
		if b := byID[id]; b != nil {
			b.Members = append(b.Members, addr)
		}
	}
	return s.wrap("read block members", rows.Err())
}

func (s *Store) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("state database %s: %s: %w", s.path, what, err)
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}
