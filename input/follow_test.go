package input

import (
	"compress/gzip"
	"fmt"
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

// rotate renames path's numbered rotations one up (mail.log.1 → .2) and
// path to path.1, as logrotate's create does.
func rotate(t *testing.T, path string, keep int) {
	t.Helper()
	for i := keep - 1; i >= 1; i-- {
		os.Rename(fmt.Sprintf("%s.%d", path, i), fmt.Sprintf("%s.%d", path, i+1))
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
}

// copyTruncate copies path to dst and truncates path, as logrotate's
// copytruncate does; gz compresses the copy.
func copyTruncate(t *testing.T, path, dst string, gz bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if gz {
		zw := gzip.NewWriter(out)
		zw.Write(data)
		zw.Close()
	} else {
		out.Write(data)
	}
	out.Close()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
}

// TestFollowSeveralRotationsBetweenLooks: every file rotated between two
// looks is read, oldest first, before the current one.
func TestFollowSeveralRotationsBetweenLooks(t *testing.T) {
	t.Run("logrotate", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "mail.log")
		appendTo(t, path, "old\n")
		rotate(t, path, 5) // mail.log.1 from before: never read
		appendTo(t, path, "a1\n")
		f := NewFollower(path, true)
		defer f.Close()
		var c collector
		want(t, c.poll(t, f), "a1")
		appendTo(t, path, "a2\n")
		rotate(t, path, 5)
		appendTo(t, path, "b1\nb2\n")
		rotate(t, path, 5)
		appendTo(t, path, "c1\n")
		rotate(t, path, 5)
		appendTo(t, path, "d1\n")
		want(t, c.poll(t, f), "a2", "b1", "b2", "c1", "d1")
		appendTo(t, path, "d2\n")
		want(t, c.poll(t, f), "d2")
	})
	t.Run("multilog", func(t *testing.T) {
		dir := t.TempDir()
		cur := filepath.Join(dir, "current")
		appendTo(t, cur, "@400000006900000000000000 m1\n")
		f := NewFollower(cur, true)
		defer f.Close()
		var c collector
		want(t, c.poll(t, f), "@400000006900000000000000 m1")
		for i := 2; i <= 5; i++ {
			os.Rename(cur, filepath.Join(dir, fmt.Sprintf("@4000000069000000%08x.s", i)))
			appendTo(t, cur, fmt.Sprintf("@4000000069000000%08x m%d\n", i, i))
		}
		want(t, c.poll(t, f), "@400000006900000000000002 m2", "@400000006900000000000003 m3", "@400000006900000000000004 m4", "@400000006900000000000005 m5")
	})
	t.Run("while stopped", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "mail.log")
		appendTo(t, path, "a1\na2\n")
		f := NewFollower(path, true)
		var c collector
		c.poll(t, f)
		saved := Pos{ID: f.id, Offset: int64(len("a1\n")), Line: 1}
		f.Close()
		rotate(t, path, 5)
		appendTo(t, path, "b1\n")
		rotate(t, path, 5)
		appendTo(t, path, "c1\n")
		g := NewFollower(path, false)
		defer g.Close()
		if got := g.Resume(saved.ID, saved.Offset, saved.Line); got != "rotated" {
			t.Fatalf("Resume = %s", got)
		}
		var d collector
		want(t, d.poll(t, g), "a2", "b1", "c1")
	})
}

// TestFollowCopyTruncate: what the copy holds beyond the position read is
// read from the copy, then the truncated file from its start; live and
// while stopped, with the copy compressed or not, and when the file grew
// past the old position again before the next look.
func TestFollowCopyTruncate(t *testing.T) {
	for _, gz := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "gzip"}[gz]
		t.Run("live "+name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mail.log")
			appendTo(t, path, "1\n2\n")
			f := NewFollower(path, true)
			defer f.Close()
			var c collector
			want(t, c.poll(t, f), "1", "2")
			appendTo(t, path, "3\n4\n") // not read before the rotation
			copyTruncate(t, path, path+".1"+map[bool]string{true: ".gz"}[gz], gz)
			appendTo(t, path, "5\n")
			want(t, c.poll(t, f), "3", "4", "5")
			appendTo(t, path, "6\n")
			want(t, c.poll(t, f), "6")
		})
		t.Run("regrown "+name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mail.log")
			appendTo(t, path, "line 1\nline 2\n")
			f := NewFollower(path, true)
			defer f.Close()
			var c collector
			c.poll(t, f)
			appendTo(t, path, "line 3\n")
			copyTruncate(t, path, path+".1"+map[bool]string{true: ".gz"}[gz], gz)
			appendTo(t, path, "next 1\nnext 2\nnext 3\nnext 4\n") // past the old offset
			want(t, c.poll(t, f), "line 3", "next 1", "next 2", "next 3", "next 4")
		})
		t.Run("empty when stalled "+name, func(t *testing.T) {
			// The file was cut, and looked at while empty; then, between
			// two looks, written, copied and cut again, and written.
			path := filepath.Join(t.TempDir(), "mail.log")
			appendTo(t, path, "1\n2\n")
			f := NewFollower(path, true)
			defer f.Close()
			var c collector
			want(t, c.poll(t, f), "1", "2")
			copyTruncate(t, path, path+".1"+map[bool]string{true: ".gz"}[gz], gz)
			want(t, c.poll(t, f))
			appendTo(t, path, "3\n4\n")
			os.Rename(path+".1"+map[bool]string{true: ".gz"}[gz], path+".2"+map[bool]string{true: ".gz"}[gz])
			copyTruncate(t, path, path+".1"+map[bool]string{true: ".gz"}[gz], gz)
			appendTo(t, path, "5\n")
			want(t, c.poll(t, f), "3", "4", "5")
		})
		t.Run("cut before a line was read "+name, func(t *testing.T) {
			// A position at 0 of a file whose first bytes are known — one
			// taken over after a rotation, read nothing of — finds its copy.
			path := filepath.Join(t.TempDir(), "mail.log")
			appendTo(t, path, "1\n2\n")
			f := NewFollower(path, true)
			var c collector
			c.poll(t, f)
			saved := Pos{ID: f.id, Offset: 0, Line: 0}
			f.Close()
			copyTruncate(t, path, path+".1"+map[bool]string{true: ".gz"}[gz], gz)
			appendTo(t, path, "3\n")
			g := NewFollower(path, false)
			defer g.Close()
			if got := g.Resume(saved.ID, saved.Offset, saved.Line); got != "rotated" {
				t.Fatalf("Resume = %s", got)
			}
			var d collector
			want(t, d.poll(t, g), "1", "2", "3")
		})
		t.Run("stopped "+name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mail.log")
			appendTo(t, path, "1\n2\n3\n")
			f := NewFollower(path, true)
			var c collector
			c.poll(t, f)
			saved := Pos{ID: f.id, Offset: int64(len("1\n")), Line: 1}
			f.Close()
			copyTruncate(t, path, path+".1"+map[bool]string{true: ".gz"}[gz], gz)
			appendTo(t, path, "4\n")
			g := NewFollower(path, false)
			defer g.Close()
			if got := g.Resume(saved.ID, saved.Offset, saved.Line); got != "rotated" {
				t.Fatalf("Resume = %s", got)
			}
			var d collector
			want(t, d.poll(t, g), "2", "3", "4")
		})
	}
}

// TestFollowResumeTellsARewrite: a file rewritten in place that kept its
// first KiB, and even its size, is not taken for the one read: the bytes
// before the saved position tell them apart, and it is read from its
// start.
func TestFollowResumeTellsARewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	head := strings.Repeat("h", 1500) + "\n"
	appendTo(t, path, head+"old one\nold two\n")
	f := NewFollower(path, true)
	var c collector
	c.poll(t, f)
	saved := c.last
	saved.ID.Fingerprint = f.Print(saved)
	f.Close()
	if len(saved.ID.Fingerprint) != 2*printSize {
		t.Fatalf("no tail in the saved fingerprint: %d bytes", len(saved.ID.Fingerprint))
	}

	// Resumed as it is: the same file.
	g := NewFollower(path, false)
	if got := g.Resume(saved.ID, saved.Offset, saved.Line); got != "resumed" {
		t.Fatalf("Resume of the same file = %s", got)
	}
	g.Close()

	// The same first KiB and size, other lines: not the same file.
	data, _ := os.ReadFile(path)
	rewritten := head + "new one\nnew two\n"
	if len(rewritten) != len(data) {
		t.Fatal("the rewrite must keep the size")
	}
	os.WriteFile(path, []byte(rewritten), 0o644)
	h := NewFollower(path, false)
	defer h.Close()
	if got := h.Resume(saved.ID, saved.Offset, saved.Line); got == "resumed" {
		t.Fatalf("Resume of a file rewritten in place = %s", got)
	}
	var d collector
	want(t, d.poll(t, h), strings.TrimSuffix(head, "\n"), "new one", "new two")
}

// TestFollowCopyTruncateWhileReadingCopies: the file followed is copied
// and cut again while the follower reads the copies made of it before
// (a busy moment, and gzip copies are slow to read): what it held when the
// follower looked is in the newest copy, read before the file is read again
// from its start.
func TestFollowCopyTruncateWhileReadingCopies(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	appendTo(t, path, "a1\na2\n")
	f := NewFollower(path, true)
	defer f.Close()
	var c collector
	want(t, c.poll(t, f), "a1", "a2")
	appendTo(t, path, "a3\n")
	copyTruncate(t, path, path+".1.gz", true) // a: a1..a3, a3 not read yet
	appendTo(t, path, "b1\n")
	os.Rename(path+".1.gz", path+".2.gz")
	copyTruncate(t, path, path+".1.gz", true) // b
	appendTo(t, path, "c1\n")
	// While the follower reads b's copy, c is copied and cut, and d written.
	var got []string
	rotated := false
	if err := f.Poll(func(l []byte, p Pos) {
		got = append(got, string(l))
		if string(l) == "b1" && !rotated {
			rotated = true
			os.Rename(path+".2.gz", path+".3.gz")
			os.Rename(path+".1.gz", path+".2.gz")
			copyTruncate(t, path, path+".1.gz", true)
			appendTo(t, path, "d1\n")
		}
	}); err != nil {
		t.Fatal(err)
	}
	want(t, got, "a3", "b1", "c1", "d1")
}

// TestFollowCutWhileReading: the file is copied, cut and written past
// where the follower was between its look and its read: the bytes read at
// the old offset are the new file's middle, so they are not handed on; the
// copy's rest comes first, then the new file from its start.
func TestFollowCutWhileReading(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	appendTo(t, path, "a1\na2\na3\n")
	f := NewFollower(path, true)
	defer f.Close()
	var got []string
	cut := false
	if err := f.Poll(func(l []byte, p Pos) {
		got = append(got, string(l))
		if !cut {
			cut = true
			copyTruncate(t, path, path+".1.gz", true)
			appendTo(t, path, "b1 is a longer line than the three before it\nb2\n")
		}
	}); err != nil {
		t.Fatal(err)
	}
	var c collector
	got = append(got, c.poll(t, f)...)
	want(t, got, "a1", "a2", "a3", "b1 is a longer line than the three before it", "b2")
}
