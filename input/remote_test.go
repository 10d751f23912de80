package input

import (
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/state"
)

// fakeFeed is a shared store's runs of one host's events.
type fakeFeed struct {
	mu   sync.Mutex
	runs [][]byte // run i is numbered i+1
}

func (f *fakeFeed) publish(events ...parsers.Event) {
	var b []byte
	for i := range events {
		b = events[i].AppendBinary(b)
	}
	f.mu.Lock()
	f.runs = append(f.runs, b)
	f.mu.Unlock()
}

func (f *fakeFeed) read(from int64, fn func(int64, []byte) error) error {
	f.mu.Lock()
	runs := slices.Clone(f.runs)
	f.mu.Unlock()
	for i, r := range runs {
		if seq := int64(i + 1); seq >= from {
			if err := fn(seq, r); err != nil {
				return err
			}
		}
	}
	return nil
}

func remoteEvent(sec int, sender string) parsers.Event {
	e := parsers.Event{Time: time.Date(2026, 11, 20, 10, 0, sec, 0, time.UTC), MTA: "postfix", Kind: parsers.Accepted, Host: "mx2",
		Sender: sender, HasSender: true, UID: -1, Size: 100, NRcpt: 1, File: "/var/log/mail.log", Line: int64(sec)}
	return e
}

// nextEvents takes n events from m, waiting as the merger says.
func nextEvents(t *testing.T, m *Merger, n int) []string {
	t.Helper()
	var got []string
	for deadline := time.Now().Add(10 * time.Second); len(got) < n && time.Now().Before(deadline); {
		e, wait, _ := m.Next()
		if e != nil {
			got = append(got, e.Sender)
			continue
		}
		if wait <= 0 {
			wait = 50 * time.Millisecond
		}
		select {
		case <-m.Wake():
		case <-time.After(wait):
		}
	}
	if len(got) < n {
		t.Fatalf("got %v, want %d events", got, n)
	}
	return got
}

// TestRemoteEventsMergeByTimeAndResumeExactly: another host's events are
// merged with this host's log in time order; only this host's are
// published; a source reopened at the position saved in the middle of a
// run hands on exactly the events after it.
func TestRemoteEventsMergeByTimeAndResumeExactly(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	os.WriteFile(log, []byte(
		"2026-11-20T10:00:02Z mx1 postfix/qmgr[2]: 4ABC1: from=<local2@example.org>, size=100, nrcpt=1 (queue active)\n"+
			"2026-11-20T10:00:04Z mx1 postfix/qmgr[2]: 4ABC2: from=<local4@example.org>, size=100, nrcpt=1 (queue active)\n"), 0o644)
	feed := &fakeFeed{}
	feed.publish(remoteEvent(1, "remote1@example.org"), remoteEvent(3, "remote3@example.org"))
	feed.publish(remoteEvent(5, "remote5@example.org"))

	o := Options{Follow: true, Location: time.UTC}
	local, err := OpenSource(Spec{Path: log, FromStart: true}, o)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMerger([]*Source{local, RemoteSource("mx2", feed.read, nil, 10*time.Millisecond, o)})
	m.Delay, m.Publish = 100*time.Millisecond, true
	got := nextEvents(t, m, 4)
	if want := []string{"remote1@example.org", "local2@example.org", "remote3@example.org", "local4@example.org"}; !slices.Equal(got, want) {
		t.Fatalf("merged %v, want %v", got, want)
	}
	// Published: the two local events, nothing of mx2's.
	var d parsers.Decoder
	var pub []string
	for rest := m.TakeEvents(nil); len(rest) > 0; {
		var e parsers.Event
		if rest, err = d.Decode(rest, &e); err != nil {
			t.Fatal(err)
		}
		pub = append(pub, e.Sender)
	}
	if want := []string{"local2@example.org", "local4@example.org"}; !slices.Equal(pub, want) {
		t.Errorf("published %v, want %v", pub, want)
	}
	var saved state.Position
	for _, p := range m.Positions(nil) {
		if p.Input == "host:mx2" {
			saved = p
		}
	}
	if saved.Offset != 1 || saved.Line != 2 {
		t.Errorf("mx2's position = run %d, %d events; want run 1, 2 events", saved.Offset, saved.Line)
	}
	m.Close()

	// Say the state was saved after remote1 only: reopened, the source
	// hands on remote3 and remote5, and nothing else.
	feed.publish(remoteEvent(6, "remote6@example.org"))
	o.Positions = map[string]state.Position{"host:mx2": {Input: "host:mx2", Offset: 1, Line: 1}}
	m = NewMerger([]*Source{RemoteSource("mx2", feed.read, nil, 10*time.Millisecond, o)})
	defer m.Close()
	if got, want := nextEvents(t, m, 3), []string{"remote3@example.org", "remote5@example.org", "remote6@example.org"}; !slices.Equal(got, want) {
		t.Fatalf("resumed %v, want %v", got, want)
	}
	if e, _, _ := m.Next(); e != nil {
		t.Fatalf("then %s, want nothing more", e.Sender)
	}
}
