package input

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Follower reads a live log as it grows, a Poll at a time. What can happen
// to a log file, and what it does about each:
//
//   - It grows: Poll reads the new bytes and hands on the complete lines. A
//     line whose newline has not been written yet is kept until it is: a
//     writer that flushes half a line gives one whole line, later.
//   - It is renamed away and a new file created under its name (logrotate's
//     create, multilog's current → @….s): the old file is read to its end
//     first — the writer may still have been writing it — then every file
//     rotated after it, oldest first (two rotations between two looks, a
//     busy moment or multilog's small files: "mail.log.1" when the old one
//     is "mail.log.2" by now, the next "@….s"), then the new one from its
//     start. A half line left at the end of a rotated file is handed on as
//     it is: nothing will complete it.
//   - It is copied and truncated in place (logrotate's copytruncate): a
//     size below the offset read, or first bytes that changed. The copy —
//     the rotated file whose first bytes are the old ones, compressed or
//     not — is read from the offset to its end, then the file again from 0.
//     Only lines written between the copy and the truncation are lost, to
//     every reader; without a copy to be found, reading starts again at 0.
//   - It does not exist yet, or disappears: Poll waits for it to appear.
//   - bombwatch was down: Resume continues at the saved position if the file
//     is the same (device, inode, the fingerprint of its first bytes, and —
//     for a position saved with one, see Print — of the bytes just before
//     the position, so that a rewrite in place is not taken for it). If
//     it was rotated meanwhile, the rotated file — "mail.log.1",
//     "mail.log.1.gz", multilog's "@….s", or copytruncate's copy — is found
//     by its inode or its first bytes and its rest read first, then every
//     file rotated after it.
//
// Positions handed on with each line are those after it: saved with the
// state the line produced, they make a restart read each line exactly once.
// Poll never sleeps; the daemon calls it when fsnotify or a timer says so.
type Follower struct {
	Path string

	file    *os.File
	id      Identity
	offset  int64 // of the next byte to read
	line    int64 // lines handed on from the file
	partial []byte
	skip    bool  // discarding the rest of a line over MaxLine
	Skipped int64 // lines skipped as too long
	// Rotations and Truncations count what Poll saw happen.
	Rotations, Truncations int64

	catchUp *Reader // the rest of a file rotated while bombwatch was down
	// emptyAt is the modification time of the file followed when it was
	// last seen empty: copies made of it since are newer.
	emptyAt time.Time
	buf     []byte
	// done are the last files read to their end: a rotated file found
	// again (compressed since, say) is not read twice.
	done []Identity
}

// maxDone bounds the files remembered as read.
const maxDone = 64

// Pos is a position in a followed file.
type Pos struct {
	ID     Identity
	Offset int64 // after the line
	Line   int64
}

// NewFollower follows path. Without a saved position it starts at the end
// of an existing file (fromStart false) or at its beginning.
func NewFollower(path string, fromStart bool) *Follower {
	f := &Follower{Path: path, buf: make([]byte, 64<<10)}
	if err := f.open(); err == nil && !fromStart {
		if st, err := f.file.Stat(); err == nil {
			f.seek(st.Size())
		}
	}
	return f
}

// Resume starts at a saved position instead. It reports what it did:
// "resumed", "rotated" (the rest of the rotated file is read first) or
// "new" (the saved file is gone: the current one is read from its start).
func (f *Follower) Resume(id Identity, offset, line int64) string {
	f.closeFile()
	f.partial, f.offset, f.line = f.partial[:0], 0, 0
	if err := f.open(); err == nil && f.same(id) {
		if st, err := f.file.Stat(); err == nil && st.Size() >= offset && tailMatches(id.Fingerprint, f.file, offset) {
			f.seek(offset)
			f.line = line
			return "resumed"
		}
	}
	if r := findRotated(f.Path, id, offset, line); r != nil {
		f.catchUp = r
		return "rotated"
	}
	return "new"
}

// Print returns the fingerprint to save with a position: for a position
// in the file followed, with the fingerprint of the bytes before it too.
func (f *Follower) Print(p Pos) []byte {
	if f.file == nil || p.ID.Inode != f.id.Inode || p.ID.Device != f.id.Device {
		return p.ID.Fingerprint
	}
	return WithTail(p.ID.Fingerprint, f.file, p.Offset)
}

// Resumed returns the file and offset a Resume continues at — the file
// itself, or the rotated one whose rest is read first — so that a parser
// can read the lines just before it again; "" when it did not resume.
func (f *Follower) Resumed() (path string, offset int64) {
	if f.catchUp != nil {
		return f.catchUp.Name, f.catchUp.Offset()
	}
	if f.file != nil && f.offset > 0 {
		return f.Path, f.offset
	}
	return "", 0
}

// ResumedFile opens the file a Resume continues at (see Resumed), checked
// to be that very file: the parser reads the lines before the position
// from it when it is made, and by then the name may be another file's —
// copytruncate may have made a new copy under it.
func (f *Follower) ResumedFile() (*os.File, int64) {
	path, off := f.Resumed()
	if path == "" {
		return nil, 0
	}
	want := f.id
	if f.catchUp != nil {
		want = f.catchUp.ID
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, 0
	}
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, 0
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || sys.Ino != want.Inode || uint64(sys.Dev) != want.Device {
		file.Close()
		return nil, 0
	}
	return file, off
}

// same reports whether the open file is the one id names.
func (f *Follower) same(id Identity) bool {
	if id.Inode != 0 && (id.Inode != f.id.Inode || id.Device != f.id.Device) {
		return false
	}
	if len(id.Fingerprint) < 8 {
		return true
	}
	return f.fingerprintMatches(id.Fingerprint)
}

// fingerprintLen is how many bytes a fingerprint was taken of.
func fingerprintLen(fp []byte) int {
	if len(fp) < 8 {
		return 0
	}
	return int(binary.BigEndian.Uint64(fp))
}

func (f *Follower) fingerprintMatches(fp []byte) bool {
	n := fingerprintLen(fp)
	if n > fingerprintSize || n < 0 {
		return false
	}
	head := make([]byte, n)
	if k, _ := f.file.ReadAt(head, 0); k != n {
		return false
	}
	return bytes.Equal(Fingerprint(head), headPrint(fp))
}

// rotationCandidates are the files beside path that rotation makes of it:
// "mail.log.1", "mail.log.2.gz", "mail.log-20261130", multilog's "@….s".
func rotationCandidates(path string) []string {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	candidates, _ := filepath.Glob(filepath.Join(dir, base+".*"))
	more, _ := filepath.Glob(filepath.Join(dir, base+"-*"))
	candidates = append(candidates, more...)
	if base == "current" { // multilog
		more, _ := filepath.Glob(filepath.Join(dir, "@*.[su]"))
		candidates = append(candidates, more...)
	}
	sort.Strings(candidates)
	return candidates
}

// findRotated looks beside path for the file a saved position belongs to:
// the same inode, or — a copy, or a compressed one — the same first bytes
// and at least offset bytes.
func findRotated(path string, id Identity, offset, line int64) *Reader {
	for _, c := range rotationCandidates(path) {
		r, err := Open(c)
		if err != nil {
			continue
		}
		if ok, _ := r.Resume(id.Fingerprint, offset, line); ok {
			return r
		}
		r.Close()
	}
	return nil
}

// readerIs reports whether r reads the file id names: r's first bytes,
// over the length id's fingerprint was taken of, hash the same — the file
// grown since, a copy, or a compressed one. An inode alone says nothing:
// a file removed (delaycompress, or the oldest rotation) gives its inode
// to the next one made. An id taken of an empty file names r only when r
// is that inode and still empty.
func readerIs(r *Reader, id Identity) bool {
	n := fingerprintLen(id.Fingerprint)
	if n == 0 {
		return id.Inode != 0 && r.ID.Inode == id.Inode && r.ID.Device == id.Device && fingerprintLen(r.ID.Fingerprint) == 0
	}
	head, _ := r.br.Peek(n)
	return len(head) == n && bytes.Equal(Fingerprint(head), headPrint(id.Fingerprint))
}

// finished remembers a file as read to its end.
func (f *Follower) finished(id Identity) {
	if len(f.done) >= maxDone {
		f.done = append(f.done[:0], f.done[len(f.done)-maxDone/2:]...)
	}
	f.done = append(f.done, id)
}

// wasRead reports whether r reads a file already read to its end.
func (f *Follower) wasRead(r *Reader) bool {
	for _, d := range f.done {
		if readerIs(r, d) {
			return true
		}
	}
	return false
}

// rotatedAfter opens the files rotated after the one last read that are
// neither the current file nor read already, oldest first. Rotation
// order is by name — multilog's @tai64n and dateext names sort oldest
// first, logrotate's numbers newest first — never by modification time,
// which ties within a clock tick; when the last file is no longer to be
// found (removed, or compressed under another first block), the files
// modified at or after since count.
//
// It also returns the file that was current when it looked, open: the
// follower goes on with that very file, so that one rotated while it
// looked is seen as rotated, not skipped.
func (f *Follower) rotatedAfter(last Identity, since time.Time) ([]*Reader, looked) {
	for attempt := 0; ; attempt++ {
		c, cur, curHead, mod := f.openCurrent()
		out := f.newerThan(last, since, cur, curHead)
		// The look holds if, once it is over, the current file is still
		// the one taken for current, with the same first bytes: rotated
		// meanwhile, it would be skipped as current and then read after
		// the files rotated after it; cut by copytruncate meanwhile, its
		// copy would be skipped as a copy of what it still holds.
		if attempt == 4 || f.stillCurrent(c, cur, curHead) {
			return out, looked{c, curHead, mod}
		}
		for _, r := range out {
			r.Close()
		}
		if c != nil {
			c.Close()
		}
	}
}

// looked is the current file as a look at the rotations found it: open,
// with its first bytes and modification time then.
type looked struct {
	file *os.File // nil: there was none
	head []byte
	mod  time.Time
}

// openCurrent opens the file now at the follower's path, with its
// identity, first bytes and modification time; nil when there is none.
func (f *Follower) openCurrent() (*os.File, Identity, []byte, time.Time) {
	var cur Identity
	c, err := os.Open(f.Path)
	if err != nil {
		return nil, cur, nil, time.Time{}
	}
	st, err := c.Stat()
	if err != nil || st.IsDir() {
		c.Close()
		return nil, cur, nil, time.Time{}
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		cur.Device, cur.Inode = uint64(sys.Dev), sys.Ino
	}
	return c, cur, readHead(c), st.ModTime()
}

// readHead reads the first bytes of a file that fingerprints take.
func readHead(r io.ReaderAt) []byte {
	head := make([]byte, fingerprintSize)
	n, _ := r.ReadAt(head, 0)
	return head[:n]
}

// stillCurrent reports whether the file at the follower's path is still
// c, holding what it held.
func (f *Follower) stillCurrent(c *os.File, cur Identity, curHead []byte) bool {
	st, err := os.Stat(f.Path)
	if c == nil {
		return err != nil // there was none, and there is none
	}
	if err != nil {
		return false
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || sys.Ino != cur.Inode || uint64(sys.Dev) != cur.Device {
		return false
	}
	now := make([]byte, len(curHead))
	n, _ := c.ReadAt(now, 0)
	return n == len(curHead) && bytes.Equal(now, curHead)
}

// newerThan is rotatedAfter's look, given the current file's identity and
// first bytes.
func (f *Follower) newerThan(last Identity, since time.Time, cur Identity, curHead []byte) []*Reader {
	copyOfCurrent := func(id Identity) bool {
		n := fingerprintLen(id.Fingerprint)
		return n > 0 && n <= len(curHead) && bytes.Equal(Fingerprint(curHead[:n]), id.Fingerprint)
	}
	base := filepath.Base(f.Path)
	all := openRotations(f.Path)
	sort.SliceStable(all, func(i, j int) bool { return olderRotation(base, all[i].Name, all[j].Name) })
	lastAt := -1
	for i, r := range all {
		if readerIs(r, last) {
			lastAt = i
		}
	}
	var out []*Reader
	for i, r := range all {
		newer := i > lastAt
		if lastAt < 0 {
			newer = !r.ModTime.Before(since)
		}
		isCurrent := cur.Inode != 0 && r.ID.Inode == cur.Inode && r.ID.Device == cur.Device
		if !newer || isCurrent || fingerprintLen(r.ID.Fingerprint) == 0 || readerIs(r, last) || f.wasRead(r) || copyOfCurrent(r.ID) {
			r.Close()
			continue
		}
		out = append(out, r)
	}
	return out
}

// openRotations opens the files rotation made of path, each once, under
// the name it has: logrotate may be renaming them (.1 to .2) while they
// are opened, so a scan during which a name changed is made again.
func openRotations(path string) []*Reader {
	var all []*Reader
	for attempt := 0; attempt < 5; attempt++ {
		for _, r := range all {
			r.Close()
		}
		all = all[:0]
		seen := map[[2]uint64]bool{}
		names := rotationCandidates(path)
		for _, c := range names {
			r, err := Open(c)
			if err != nil {
				continue
			}
			if k := [2]uint64{r.ID.Device, r.ID.Inode}; seen[k] {
				r.Close()
				continue
			} else {
				seen[k] = true
			}
			all = append(all, r)
		}
		// Stable: the same names listed again, each still the file opened
		// under it. A shift in progress (.6 to .7 while .7 goes to .8)
		// would otherwise put a file under a name it no longer has, and
		// out of order.
		stable := slices.Equal(names, rotationCandidates(path))
		for _, r := range all {
			if !stable {
				break
			}
			st, err := os.Stat(r.Name)
			if err != nil {
				stable = false
				break
			}
			if sys, ok := st.Sys().(*syscall.Stat_t); !ok || sys.Ino != r.ID.Inode || uint64(sys.Dev) != r.ID.Device {
				stable = false
				break
			}
		}
		if stable {
			break
		}
	}
	return all
}

// olderRotation reports whether rotated file a is older than b: a higher
// logrotate number ("mail.log.3" before "mail.log.1.gz"), else the name
// ("@4000….s", "mail.log-20261129" before "mail.log-20261130").
func olderRotation(base, a, b string) bool {
	na, oka := rotationNumber(base, a)
	nb, okb := rotationNumber(base, b)
	if oka && okb && na != nb {
		return na > nb
	}
	return filepath.Base(a) < filepath.Base(b)
}

// rotationNumber reads N of "base.N" or "base.N.gz".
func rotationNumber(base, name string) (int, bool) {
	rest, ok := strings.CutPrefix(filepath.Base(name), base+".")
	if !ok {
		return 0, false
	}
	rest = strings.TrimSuffix(rest, ".gz")
	n, err := strconv.Atoi(rest)
	return n, err == nil
}

// readRotated hands on every line of the files rotated after last, oldest
// first, and remembers them as read. It returns the file that was current
// then, as it was (its file nil when there was none).
func (f *Follower) readRotated(last Identity, since time.Time, fn func([]byte, Pos)) looked {
	newer, cur := f.rotatedAfter(last, since)
	for _, r := range newer {
		f.readToEnd(r, fn)
	}
	return cur
}

// readToEnd hands on the rest of a rotated file and closes it.
func (f *Follower) readToEnd(r *Reader, fn func([]byte, Pos)) {
	for {
		l, err := r.Next()
		if err != nil {
			break
		}
		fn(l, Pos{ID: r.ID, Offset: r.Offset(), Line: r.Line()})
	}
	f.Skipped += r.Skipped
	f.finished(r.ID)
	r.Close()
}

func (f *Follower) open() error {
	file, err := os.Open(f.Path)
	if err != nil {
		return err
	}
	return f.use(file)
}

// adopt goes on with the file a look found current, read from its start.
// Reading the files rotated before it took time: if it was cut since the
// look (copytruncate), what it held then is in its copy, read first; if
// it was empty then and has bytes now, the copies made meanwhile are.
func (f *Follower) adopt(cur looked, fn func([]byte, Pos)) {
	if f.use(cur.file) != nil {
		return
	}
	f.id.Fingerprint = Fingerprint(cur.head)
	if len(cur.head) == 0 {
		f.emptyAt = cur.mod
		f.copiedWhileEmpty(fn)
		return
	}
	if !f.fingerprintMatches(f.id.Fingerprint) {
		f.truncated(fn)
	}
}

// use makes file the one followed, from its start.
func (f *Follower) use(file *os.File) error {
	st, err := file.Stat()
	if err != nil || st.IsDir() {
		file.Close()
		if err == nil {
			err = fmt.Errorf("%s: is a directory", f.Path)
		}
		return err
	}
	f.file = file
	f.id = Identity{}
	f.emptyAt = time.Time{}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		f.id.Device, f.id.Inode = uint64(sys.Dev), sys.Ino
	}
	f.offset, f.line, f.partial, f.skip = 0, 0, f.partial[:0], false
	return nil
}

func (f *Follower) seek(off int64) {
	if _, err := f.file.Seek(off, io.SeekStart); err == nil {
		f.offset = off
	}
}

func (f *Follower) closeFile() {
	if f.file != nil {
		f.file.Close()
		f.file = nil
	}
}

// Close stops following.
func (f *Follower) Close() {
	f.closeFile()
	if f.catchUp != nil {
		f.catchUp.Close()
		f.catchUp = nil
	}
}

// Position is where the next line starts.
func (f *Follower) Position() Pos {
	return Pos{ID: f.id, Offset: f.offset - int64(len(f.partial)), Line: f.line}
}

// Poll reads what is new and calls fn for every complete line, with the
// position after it. The line is only valid during the call.
func (f *Follower) Poll(fn func(line []byte, pos Pos)) error {
	if r := f.catchUp; r != nil {
		f.catchUp = nil
		id, mod := r.ID, r.ModTime
		f.readToEnd(r, fn)
		if cur := f.readRotated(id, mod, fn); cur.file != nil {
			f.closeFile() // the one current at Resume, if it was rotated since, was read above
			f.adopt(cur, fn)
		}
	}
	if f.file == nil {
		if err := f.open(); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil // not there yet: next time
			}
			return err
		}
		f.ensureFingerprint()
	} else if f.cutInPlace() {
		// Before reading on: a file cut and written past the old offset
		// again would otherwise be read from the middle.
		f.truncated(fn)
	} else if f.offset == 0 && !f.emptyAt.IsZero() {
		f.copiedWhileEmpty(fn)
	}
	if err := f.drain(fn); err != nil {
		return err
	}
	// At the end of what there is: has the file been replaced or cut?
	st, err := os.Stat(f.Path)
	switch {
	case err != nil && errors.Is(err, os.ErrNotExist):
		return nil // renamed away and not yet recreated: keep the old one
	case err != nil:
		return err
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	if sys != nil && (sys.Ino != f.id.Inode || uint64(sys.Dev) != f.id.Device) {
		f.Rotations++
		if err := f.drain(fn); err != nil { // what the writer added before it moved on
			return err
		}
		if len(f.partial) > 0 {
			fn(f.partial, Pos{ID: f.id, Offset: f.offset, Line: f.line + 1})
		}
		var mod time.Time
		if st, err := f.file.Stat(); err == nil {
			mod = st.ModTime()
		}
		old := f.id
		f.finished(old)
		f.closeFile()
		cur := f.readRotated(old, mod, fn)
		if cur.file == nil {
			return nil // renamed away and not yet recreated
		}
		f.adopt(cur, fn)
		return f.drain(fn)
	}
	if st.Size() < f.offset || f.cutInPlace() {
		f.truncated(fn)
		return f.drain(fn)
	}
	return nil
}

// cutInPlace reports whether the open file was truncated: it is smaller
// than what was read, or — when the writer already wrote past where we
// were — different in its first bytes.
func (f *Follower) cutInPlace() bool {
	if st, err := f.file.Stat(); err == nil && st.Size() < f.offset {
		return true
	}
	return fingerprintLen(f.id.Fingerprint) > 0 && !f.fingerprintMatches(f.id.Fingerprint)
}

// truncated reads what copytruncate's copy holds beyond the position, and
// the copies made after it, and starts the file again from 0 — as the
// look at the copies found it: cut again while they were read (gzip copies
// are slow to read), what it held then is in its newest copy (adopt).
func (f *Follower) truncated(fn func([]byte, Pos)) {
	f.Truncations++
	pos := f.Position()
	if r := findRotated(f.Path, f.id, pos.Offset, pos.Line); r != nil {
		id, mod := r.ID, r.ModTime
		f.readToEnd(r, fn)
		if cur := f.readRotated(id, mod, fn); cur.file != nil {
			f.closeFile() // cur is the same file: copytruncate keeps it
			f.adopt(cur, fn)
			return
		}
	}
	f.seek(0)
	f.offset, f.line, f.partial, f.skip = 0, 0, f.partial[:0], false
	f.ensureFingerprint()
}

// ensureFingerprint takes the fingerprint of a file being read from its
// start, once it has bytes.
func (f *Follower) ensureFingerprint() {
	head := readHead(f.file)
	f.id.Fingerprint = Fingerprint(head)
	f.emptyAt = time.Time{}
	if len(head) == 0 {
		if st, err := f.file.Stat(); err == nil {
			f.emptyAt = st.ModTime()
		}
	}
}

// copiedWhileEmpty reads the copies copytruncate made of a file that was
// empty when last looked at and has bytes now: written, copied and cut
// between two looks (a stalled daemon), what was written leaves no trace
// in the file — nothing was read of it, and it was empty — but its copy
// does. Once something is read of the file, a cut shows in the file
// itself (cutInPlace).
func (f *Follower) copiedWhileEmpty(fn func([]byte, Pos)) {
	if st, err := f.file.Stat(); err != nil || st.Size() == 0 {
		return
	}
	var last Identity
	if len(f.done) > 0 {
		last = f.done[len(f.done)-1]
	}
	newer, cur := f.rotatedAfter(last, f.emptyAt)
	if cur.file != nil {
		cur.file.Close() // f.file goes on
	}
	// The file followed itself, renamed since — or compressed under
	// another inode (delaycompress) — holds what it holds now.
	head := readHead(f.file)
	own := Identity{Fingerprint: Fingerprint(head)}
	renamed := slices.ContainsFunc(newer, func(r *Reader) bool {
		return r.ID.Inode == f.id.Inode && r.ID.Device == f.id.Device || len(head) > 0 && readerIs(r, own)
	})
	for _, r := range newer {
		if renamed {
			// The file followed was renamed, not copied: Poll reads it
			// to its end, then the files rotated after it, in order.
			r.Close()
		} else {
			f.readToEnd(r, fn)
		}
	}
}

// drain reads the open file to its end.
func (f *Follower) drain(fn func([]byte, Pos)) error {
	for cuts := 0; ; {
		n, err := f.file.Read(f.buf)
		if n > 0 && cuts < 8 && fingerprintLen(f.id.Fingerprint) > 0 && !f.fingerprintMatches(f.id.Fingerprint) {
			// Cut (copytruncate) and written past where we were between
			// the look and the read: what was read is the new file's
			// middle. It is not handed on: the copy's rest is read, then
			// the file from its start.
			cuts++
			f.truncated(fn)
			continue
		}
		if n > 0 {
			if fingerprintLen(f.id.Fingerprint) < fingerprintSize {
				f.ensureFingerprint() // a young file's fingerprint grows with it
			}
			f.split(f.buf[:n], fn)
		}
		if err == io.EOF || n == 0 {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
	}
}

// split hands on the complete lines of data, keeping the rest.
func (f *Follower) split(data []byte, fn func([]byte, Pos)) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			f.offset += int64(len(data))
			if !f.skip {
				f.partial = append(f.partial, data...)
				if len(f.partial) > MaxLine {
					f.partial, f.skip = f.partial[:0], true
				}
			}
			return
		}
		chunk := data[:i]
		f.offset += int64(i + 1)
		data = data[i+1:]
		f.line++
		if f.skip {
			f.skip = false
			f.Skipped++
			continue
		}
		line := chunk
		if len(f.partial) > 0 {
			f.partial = append(f.partial, chunk...)
			line = f.partial
		}
		if len(line) > MaxLine {
			f.Skipped++
		} else {
			fn(bytes.TrimSuffix(line, []byte{'\r'}), Pos{ID: f.id, Offset: f.offset, Line: f.line})
		}
		f.partial = f.partial[:0]
	}
}
