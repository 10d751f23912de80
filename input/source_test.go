package input

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/state"
)

func TestGroup(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"mail.log mail.log.1 mail.log.2.gz", "mail.log.2.gz,mail.log.1,mail.log"},
		{"mail.log.1 other.log mail.log", "mail.log.1,mail.log other.log"},
		{"mail.log-20261130 mail.log-20261129.gz mail.log", "mail.log-20261129.gz,mail.log-20261130,mail.log"},
		{"a/mail.log.1 b/mail.log", "a/mail.log.1 b/mail.log"}, // two directories: two logs
		{"@400000006.s current @400000005.s", "@400000005.s,@400000006.s,current"},
		{"- mail.log", "- mail.log"},
	} {
		var got []string
		for _, g := range Group(strings.Fields(c.in)) {
			got = append(got, strings.Join(g, ","))
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("Group(%s) = %s, want %s", c.in, strings.Join(got, " "), c.want)
		}
	}
}

// TestOneParserAcrossALogsFiles: a Postfix message whose smtpd line is in
// mail.log.1 and its qmgr line in mail.log keeps its client when the two
// are read together, in whatever order they are given.
func TestOneParserAcrossALogsFiles(t *testing.T) {
	dir := t.TempDir()
	rotated, current := filepath.Join(dir, "mail.log.1"), filepath.Join(dir, "mail.log")
	os.WriteFile(rotated, []byte("2026-11-20T10:00:00Z mx postfix/smtpd[1]: 4ABC1: client=c.example[192.0.2.7]\n"), 0o644)
	os.WriteFile(current, []byte("2026-11-20T10:00:01Z mx postfix/qmgr[2]: 4ABC1: from=<a@example.org>, size=100, nrcpt=1 (queue active)\n"), 0o644)
	for _, order := range [][]string{{rotated, current}, {current, rotated}} {
		specs := []Spec{{Path: order[0]}, {Path: order[1]}}
		srcs, errs := OpenSources(specs, Options{Location: time.UTC})
		if len(errs) > 0 || len(srcs) != 1 {
			t.Fatalf("%v: %d sources, errors %v; want one", order, len(srcs), errs)
		}
		m := NewMerger(srcs)
		var got []parsers.Event
		for {
			e, _, done := m.Next()
			if done {
				break
			}
			if e != nil {
				got = append(got, *e)
			}
		}
		m.Close()
		if len(got) != 1 || got[0].ClientIP.String() != "192.0.2.7" || got[0].File != current {
			t.Errorf("%v: events %+v; want one accepted from 192.0.2.7 in %s", order, got, current)
		}
	}
}

// TestMergerHoldsForAQuietInput: followed, an event newer than all a
// quiet input has shown waits until that input has been quiet for Delay,
// by the merger's clock.
func TestMergerHoldsForAQuietInput(t *testing.T) {
	dir := t.TempDir()
	busy, quiet := filepath.Join(dir, "mx1.log"), filepath.Join(dir, "mx2.log")
	os.WriteFile(busy, []byte("2026-11-20T10:00:05Z mx postfix/qmgr[2]: 4ABC1: from=<a@example.org>, size=100, nrcpt=1 (queue active)\n"), 0o644)
	os.WriteFile(quiet, []byte("2026-11-20T10:00:01Z mx postfix/qmgr[2]: 4ABC2: from=<b@example.org>, size=100, nrcpt=1 (queue active)\n"), 0o644)
	clock := time.Now()
	os.Chtimes(quiet, clock, clock)
	now := func() time.Time { return clock }
	srcs, errs := OpenSources([]Spec{{Path: busy, FromStart: true}, {Path: quiet, FromStart: true}}, Options{Follow: true, Location: time.UTC, Now: now})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	m := NewMerger(srcs)
	defer m.Close()
	m.Delay, m.Now = 3*time.Second, now
	next := func() (*parsers.Event, time.Duration) {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			e, wait, _ := m.Next()
			if e != nil || wait > 0 {
				return e, wait
			}
			select {
			case <-m.Wake():
			case <-time.After(50 * time.Millisecond):
			}
		}
		t.Fatal("the merger neither handed on nor said how long to wait")
		return nil, 0
	}
	if e, _ := next(); e == nil || e.Sender != "b@example.org" {
		t.Fatalf("first: %+v; want the older event, b@", e)
	}
	e, wait := next()
	if e != nil || wait <= 0 || wait > 3*time.Second {
		t.Fatalf("second: %+v after waiting %s; want to wait up to 3s for the quiet input", e, wait)
	}
	clock = clock.Add(3 * time.Second)
	if e, _ := next(); e == nil || e.Sender != "a@example.org" {
		t.Fatalf("after the delay: %+v; want a@", e)
	}
	if got := slices.Collect(func(yield func(string) bool) {
		for _, p := range m.Positions(nil) {
			yield(filepath.Base(p.Input))
		}
	}); len(got) != 2 {
		t.Errorf("positions of %v, want both logs", got)
	}
}

// TestSavedPositionStandsUntilRead: a followed log rotated while bombwatch
// was down keeps its saved position until a line is read, so that a stop
// before then does not skip the rest of the rotated file.
func TestSavedPositionStandsUntilRead(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	first := "2026-11-20T10:00:00Z mx postfix/qmgr[2]: 4ABC1: from=<a@example.org>, size=100, nrcpt=1 (queue active)\n"
	os.WriteFile(log, []byte(first), 0o644)
	r, err := Open(log)
	if err != nil {
		t.Fatal(err)
	}
	saved := state.Position{Input: log, Device: r.ID.Device, Inode: r.ID.Inode, Offset: int64(len(first)), Line: 1, Fingerprint: r.ID.Fingerprint}
	r.Close()
	// Written on, then rotated, while down.
	f, _ := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("2026-11-20T10:00:01Z mx postfix/qmgr[2]: 4ABC2: from=<b@example.org>, size=100, nrcpt=1 (queue active)\n")
	f.Close()
	os.Rename(log, log+".1")
	os.WriteFile(log, nil, 0o644)

	s, err := OpenSource(Spec{Path: log}, Options{Follow: true, Positions: map[string]state.Position{log: saved}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p, ok := s.position(); !ok || p.Inode != saved.Inode || p.Offset != saved.Offset {
		t.Errorf("position before reading = %+v, want the saved one", p)
	}
}

// TestFollowedNonMTALinesAreNotPostfix: a followed file that starts with
// lines no MTA wrote is said once, its lines give no events, and the MTA's
// lines that follow are detected and read.
func TestFollowedNonMTALinesAreNotPostfix(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mixed.log")
	var b strings.Builder
	for i := range 60 {
		fmt.Fprintf(&b, "Nov 20 10:00:%02d web nginx[9]: GET /index.html %d\n", i%60, i)
	}
	for i := range 3 {
		fmt.Fprintf(&b, "2026-11-20T10:01:%02dZ mx postfix/qmgr[2]: 4ABC%d: from=<a@example.org>, size=100, nrcpt=1 (queue active)\n", i, i)
	}
	os.WriteFile(log, []byte(b.String()), 0o644)
	var said strings.Builder
	s, err := OpenSource(Spec{Path: log, FromStart: true}, Options{Follow: true, Location: time.UTC,
		Log: slog.New(slog.NewTextHandler(&said, nil))})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMerger([]*Source{s})
	defer m.Close()
	var senders []string
	for deadline := time.Now().Add(10 * time.Second); len(senders) < 3 && time.Now().Before(deadline); {
		e, _, _ := m.Next()
		if e == nil {
			select {
			case <-m.Wake():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		senders = append(senders, e.Sender)
	}
	if len(senders) != 3 || s.Format != "postfix" {
		t.Errorf("events from %v as %q; want the 3 Postfix messages", senders, s.Format)
	}
	if n := strings.Count(said.String(), "no line of an MTA's yet"); n != 1 {
		t.Errorf("said %d times that the format is unknown, want once:\n%s", n, said.String())
	}
}

// TestWarmReadsTheFileResumedInWhateverItsNameNow: a followed log resumed
// in its rotated copy, and cut again before the first line is read — a
// new copy under the old copy's name — still lets the parser read the
// lines before the position from the file resumed in: the message whose
// smtpd line came before the position keeps its client. With format auto
// the parser is made at the first line, after the second cut.
func TestWarmReadsTheFileResumedInWhateverItsNameNow(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	smtpd := "2026-11-20T10:00:00Z mx postfix/smtpd[1]: 4ABC1: client=c.example[192.0.2.7]\n"
	os.WriteFile(log, []byte(smtpd), 0o644)
	r, err := Open(log)
	if err != nil {
		t.Fatal(err)
	}
	saved := state.Position{Input: log, Device: r.ID.Device, Inode: r.ID.Inode, Offset: int64(len(smtpd)), Line: 1, Fingerprint: r.ID.Fingerprint}
	r.Close()
	// Copied and cut while down: the copy holds the position.
	os.WriteFile(log+".1", []byte(smtpd), 0o644)
	os.Truncate(log, 0)
	s, err := OpenSource(Spec{Path: log}, Options{Follow: true, Location: time.UTC, Positions: map[string]state.Position{log: saved}})
	if err != nil {
		t.Fatal(err)
	}
	// Written, copied and cut again before a line is read.
	os.Rename(log+".1", log+".2")
	os.WriteFile(log+".1", []byte("2026-11-20T10:00:01Z mx postfix/qmgr[2]: 4ABC1: from=<a@example.org>, size=100, nrcpt=1 (queue active)\n"), 0o644)
	m := NewMerger([]*Source{s})
	defer m.Close()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		e, _, done := m.Next()
		if e != nil && e.Kind == parsers.Accepted {
			if e.ClientIP.String() != "192.0.2.7" {
				t.Errorf("accepted %+v: want it from 192.0.2.7, the client before the position", e)
			}
			return
		}
		if done {
			break
		}
		if e == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Error("no accepted event")
}
