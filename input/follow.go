package input

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Follower reads a live log as it grows, a Poll at a time. What can happen
// to a log file, and what it does about each:
//
//   - It grows: Poll reads the new bytes and hands on the complete lines. A
//     line whose newline has not been written yet is kept until it is: a
//     writer that flushes half a line gives one whole line, later.
//   - It is renamed away and a new file created under its name (logrotate's
//     create, multilog's current → @….s): the old file is read to its end
//     first — the writer may still have been writing it — then the new one
//     from its start. A half line left at the end of the old file is handed
//     on as it is: nothing will complete it.
//   - It is truncated in place (logrotate's copytruncate): a size below the
//     offset read. Reading starts again at 0; lines written between the
//     copy and the truncation are lost to every reader, this one included.
//   - It does not exist yet, or disappears: Poll waits for it to appear.
//   - bombwatch was down: Resume continues at the saved position if the file
//     is the same (device, inode and the fingerprint of its first bytes). If
//     it was rotated meanwhile, the rotated file — "mail.log.1",
//     "mail.log.1.gz", multilog's "@….s" — is found by its identity and its
//     rest read first.
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
	buf     []byte
}

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
		if st, err := f.file.Stat(); err == nil && st.Size() >= offset {
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
	return bytes.Equal(Fingerprint(head), fp)
}

// findRotated looks beside path for the file a saved position belongs to.
func findRotated(path string, id Identity, offset, line int64) *Reader {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	candidates, _ := filepath.Glob(filepath.Join(dir, base+".*"))
	if base == "current" { // multilog
		more, _ := filepath.Glob(filepath.Join(dir, "@*.[su]"))
		candidates = append(candidates, more...)
	}
	sort.Strings(candidates)
	for _, c := range candidates {
		r, err := Open(c)
		if err != nil {
			continue
		}
		plainMatch := r.gz == nil && id.Inode != 0 && r.ID.Inode == id.Inode && r.ID.Device == id.Device
		if plainMatch || r.gz != nil && strings.HasSuffix(c, ".gz") {
			if ok, _ := r.Resume(id.Fingerprint, offset, line); ok {
				return r
			}
		}
		r.Close()
	}
	return nil
}

func (f *Follower) open() error {
	file, err := os.Open(f.Path)
	if err != nil {
		return err
	}
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
	if f.catchUp != nil {
		for {
			l, err := f.catchUp.Next()
			if err != nil {
				break
			}
			fn(l, Pos{ID: f.catchUp.ID, Offset: f.catchUp.Offset(), Line: f.catchUp.Line()})
		}
		f.catchUp.Close()
		f.catchUp = nil
	}
	if f.file == nil {
		if err := f.open(); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil // not there yet: next time
			}
			return err
		}
		f.ensureFingerprint()
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
		f.closeFile()
		if err := f.open(); err != nil {
			return nil
		}
		f.ensureFingerprint()
		return f.drain(fn)
	}
	// Cut in place: smaller than what was read, or — when the writer
	// already wrote past where we were — different in its first bytes.
	if st.Size() < f.offset || fingerprintLen(f.id.Fingerprint) > 0 && !f.fingerprintMatches(f.id.Fingerprint) {
		f.Truncations++
		f.seek(0)
		f.offset, f.line, f.partial, f.skip = 0, 0, f.partial[:0], false
		f.ensureFingerprint()
		return f.drain(fn)
	}
	return nil
}

// ensureFingerprint takes the fingerprint of a file being read from its
// start, once it has bytes.
func (f *Follower) ensureFingerprint() {
	head := make([]byte, fingerprintSize)
	n, _ := f.file.ReadAt(head, 0)
	f.id.Fingerprint = Fingerprint(head[:n])
}

// drain reads the open file to its end.
func (f *Follower) drain(fn func([]byte, Pos)) error {
	for {
		n, err := f.file.Read(f.buf)
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
