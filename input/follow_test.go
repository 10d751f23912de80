package input

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// collector gathers what a follower hands on.
type collector struct {
	lines []string
	last  Pos
}

func (c *collector) poll(t *testing.T, f *Follower) []string {
	t.Helper()
	start := len(c.lines)
	if err := f.Poll(func(l []byte, p Pos) { c.lines = append(c.lines, string(l)); c.last = p }); err != nil {
		t.Fatal(err)
	}
	return c.lines[start:]
}

func appendTo(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(data)
	f.Close()
}

func want(t *testing.T, got []string, w ...string) {
	t.Helper()
	if strings.Join(got, "|") != strings.Join(w, "|") || len(got) != len(w) {
		t.Errorf("lines %q, want %q", got, w)
	}
}

func TestFollowGrowthAndHalfLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	appendTo(t, path, "old\n")
	f := NewFollower(path, false) // an existing file: from its end
	defer f.Close()
	var c collector
	want(t, c.poll(t, f))
	appendTo(t, path, "one\ntw")
	want(t, c.poll(t, f), "one")
	want(t, c.poll(t, f)) // the half line waits
	appendTo(t, path, "o\nthree\n")
	want(t, c.poll(t, f), "two", "three")
	if c.last.Line != 3 || c.last.Offset != int64(len("old\none\ntwo\nthree\n")) {
		t.Errorf("position %+v", c.last)
	}
	// The position of a half line is its start.
	appendTo(t, path, "fou")
	c.poll(t, f)
	if p := f.Position(); p.Offset != int64(len("old\none\ntwo\nthree\n")) {
		t.Errorf("position with a half line: %+v", p)
	}
}

func TestFollowRotations(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	appendTo(t, path, "")
	f := NewFollower(path, true)
	defer f.Close()
	var c collector
	appendTo(t, path, "a\nb\n")
	want(t, c.poll(t, f), "a", "b")

	// Rename and create: the writer's last words to the old file come first.
	os.Rename(path, path+".1")
	appendTo(t, path+".1", "c\nhalf")
	want(t, c.poll(t, f), "c") // no new file yet: the old one is still read
	appendTo(t, path, "d\n")
	want(t, c.poll(t, f), "half", "d")

	// copytruncate: same file, cut to nothing, written again.
	os.Truncate(path, 0)
	appendTo(t, path, "e\n")
	want(t, c.poll(t, f), "e")
	if f.Rotations != 1 || f.Truncations != 1 {
		t.Errorf("rotations %d, truncations %d", f.Rotations, f.Truncations)
	}

	// The file disappears and comes back.
	os.Remove(path)
	want(t, c.poll(t, f))
	appendTo(t, path, "f\n")
	want(t, c.poll(t, f), "f")
}

func TestFollowMultilog(t *testing.T) {
	dir := t.TempDir()
	cur := filepath.Join(dir, "current")
	appendTo(t, cur, "")
	f := NewFollower(cur, true)
	defer f.Close()
	var c collector
	appendTo(t, cur, "@4000000038c3eeb027f41c7c new msg 1\n")
	c.poll(t, f)
	os.Rename(cur, filepath.Join(dir, "@4000000038c3eeb027f41c7d.s"))
	appendTo(t, cur, "@4000000038c3eeb027f41c7e new msg 2\n")
	want(t, c.poll(t, f), "@4000000038c3eeb027f41c7e new msg 2")
}

func TestFollowMissingAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	f := NewFollower(path, false)
	defer f.Close()
	var c collector
	want(t, c.poll(t, f))
	appendTo(t, path, "first\n")
	want(t, c.poll(t, f), "first") // a file that appears is read from its start
}

func TestFollowLongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	appendTo(t, path, "")
	f := NewFollower(path, true)
	defer f.Close()
	var c collector
	appendTo(t, path, "a\n"+strings.Repeat("x", MaxLine+10))
	want(t, c.poll(t, f), "a")
	appendTo(t, path, strings.Repeat("y", 100)+"\nb\r\n")
	want(t, c.poll(t, f), "b")
	if f.Skipped != 1 {
		t.Errorf("skipped %d", f.Skipped)
	}
}

func TestFollowResume(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	appendTo(t, path, "one\ntwo\n")
	f := NewFollower(path, true)
	var c collector
	c.poll(t, f)
	pos := Pos{ID: f.id, Offset: int64(len("one\n")), Line: 1} // only "one" was saved
	f.Close()

	// Same file: resume after "one".
	g := NewFollower(path, false)
	if got := g.Resume(pos.ID, pos.Offset, pos.Line); got != "resumed" {
		t.Fatalf("Resume = %s", got)
	}
	var d collector
	want(t, d.poll(t, g), "two")
	g.Close()

	// Rotated while down, then compressed: its rest comes first.
	appendTo(t, path, "three\n")
	data, _ := os.ReadFile(path)
	os.Remove(path)
	gz, _ := os.Create(path + ".1.gz")
	zw := gzip.NewWriter(gz)
	zw.Write(data)
	zw.Close()
	gz.Close()
	appendTo(t, path, "four\n")
	h := NewFollower(path, false)
	defer h.Close()
	if got := h.Resume(pos.ID, pos.Offset, pos.Line); got != "rotated" {
		t.Fatalf("Resume after rotation = %s", got)
	}
	var e collector
	want(t, e.poll(t, h), "two", "three", "four")

	// Nothing left of the saved file: the current one from its start.
	k := NewFollower(path, false)
	defer k.Close()
	if got := k.Resume(Identity{Inode: 1, Fingerprint: Fingerprint([]byte("nothing like it"))}, 5, 1); got != "new" {
		t.Errorf("Resume of a vanished file = %s", got)
	}
	var x collector
	want(t, x.poll(t, k), "four")
}
