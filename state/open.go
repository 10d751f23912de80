package state

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// OpenOptions say how a store is opened.
type OpenOptions struct {
	// ReadOnly opens it for commands that only read (bans list, report,
	// explain): they never write, and may read a store another process
	// writes.
	ReadOnly bool
	// Host names this host's rows in a store several hosts share
	// (PostgreSQL); "" is the machine's name.
	Host string
	// AllHosts makes a store several hosts share read every host's
	// report counts (Stats) and newest event time (the Snapshot's Clock)
	// together: a report of the whole site. A store of one host ignores it.
	AllHosts bool
	// Timeout bounds each exchange with a store over the network: past
	// it, the store is out of reach (its error says so) and the daemon
	// goes on alone. 0 is the store's default.
	Timeout time.Duration
}

// Opener opens a store from its DSN with the scheme taken off ("PATH" of
// "sqlite:PATH").
type Opener func(rest string, o OpenOptions) (Store, error)

var (
	openersMu sync.Mutex
	openers   = map[string]Opener{}
)

// Register makes Open know a scheme: package sqlite registers "sqlite",
// the embedded default. It is called from init functions.
func Register(scheme string, open Opener) {
	openersMu.Lock()
	defer openersMu.Unlock()
	openers[scheme] = open
}

// Reader is what reports read of a state: the per-minute stats and the
// blocks. Every store is one. Stats hands each committed batch's stats on
// in minute order, so that a key's minutes come in order.
type Reader interface {
	Stats(firstMinute, lastMinute int64, fn func(*Stat)) error
	Blocks(activeOnly bool, since time.Time) ([]Block, error)
}

// Scheme tells the store a DSN names and the rest of it: "sqlite:PATH" and
// a plain path are SQLite's ("sqlite", PATH), "memory:" the Memory store's,
// "postgres://…" and "postgresql://…" PostgreSQL's (whole).
func Scheme(dsn string) (scheme, rest string) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return "postgres", dsn
	case strings.HasPrefix(dsn, "sqlite:"):
		return "sqlite", strings.TrimPrefix(dsn, "sqlite:")
	case dsn == "memory:":
		return "memory", ""
	}
	return "sqlite", dsn
}

// Open opens the store a DSN names (see Scheme). It is the one place a
// command opens its state.
func Open(dsn string, o OpenOptions) (Store, error) {
	scheme, rest := Scheme(dsn)
	if scheme == "memory" {
		return NewMemory(), nil
	}
	openersMu.Lock()
	open := openers[scheme]
	known := make([]string, 0, len(openers))
	for s := range openers {
		known = append(known, s)
	}
	openersMu.Unlock()
	if open == nil {
		slices.Sort(known)
		return nil, fmt.Errorf("state %q: no %s store in this build (stores: %s, memory)", Redact(dsn), scheme, strings.Join(known, ", "))
	}
	if rest == "" {
		return nil, fmt.Errorf("state %q: no path", dsn)
	}
	return open(rest, o)
}

// Redact hides a password in a DSN said in an error.
func Redact(dsn string) string {
	if at := strings.LastIndex(dsn, "@"); at >= 0 {
		if i := strings.Index(dsn, "://"); i >= 0 && i < at {
			if colon := strings.Index(dsn[i+3:at], ":"); colon >= 0 {
				return dsn[:i+3+colon] + ":***" + dsn[at:]
			}
		}
	}
	return dsn
}
