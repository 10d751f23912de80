package postgres

import (
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/internal/pgtest"
	"github.com/bombwatch/bombwatch/state"
	"github.com/bombwatch/bombwatch/state/statetest"
)

// TestConforms runs the state.Store conformance suite against a real
// PostgreSQL server: a throwaway cluster, a new database each test.
func TestConforms(t *testing.T) {
	srv := pgtest.Start(t)
	statetest.Run(t, func(t *testing.T) state.Store {
		s, err := Open(srv.NewDatabase(t), state.OpenOptions{Host: "mx1"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestHostsKeepTheirOwnRows: two hosts on one database each load their
// own windows, positions and blocks, and a full batch of one drops none
// of the other's; block IDs never collide.
func TestHostsKeepTheirOwnRows(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	mx1, err := Open(dsn, state.OpenOptions{Host: "mx1"})
	if err != nil {
		t.Fatal(err)
	}
	defer mx1.Close()
	mx2, err := Open(dsn, state.OpenOptions{Host: "mx2"})
	if err != nil {
		t.Fatal(err)
	}
	defer mx2.Close()
	for _, s := range []*Store{mx1, mx2} {
		first, err := s.ReserveIDs(10)
		if err != nil {
			t.Fatal(err)
		}
		b := &state.Batch{Full: true, Positions: []state.Position{{Input: "/var/log/mail.log", Offset: 100}},
			Blocks: []state.Block{{ID: first, Rule: "r", KeyType: "sender", Key: s.host + "@example.org"}}}
		b.Segment.Add(&state.Window{Rule: "r/0", Key: s.host, Times: []int64{1}, Touched: 1})
		if err := s.Commit(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*Store{mx1, mx2} {
		var keys []string
		s.Windows(func(w *state.Window) { keys = append(keys, w.Key) })
		snap, err := s.Load()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0] != s.host || len(snap.Blocks) != 1 || snap.Blocks[0].Key != s.host+"@example.org" || len(snap.Positions) != 1 {
			t.Errorf("%s loads windows %v, blocks %+v, positions %v", s.host, keys, snap.Blocks, snap.Positions)
		}
	}
	a, _ := mx1.Blocks(true, time.Time{})
	b, _ := mx2.Blocks(true, time.Time{})
	if len(a) != 1 || len(b) != 1 || a[0].ID == b[0].ID {
		t.Errorf("block IDs %v and %v", a, b)
	}
}
