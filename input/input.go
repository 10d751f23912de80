// Package input reads log files line by line, keeping the byte offset of
// each line so that a restart can resume exactly after the last line whose
// effects were saved.
//
// What can happen to a log, and what Reader does about it:
//   - Compressed: a file that starts with the gzip magic is decompressed,
//     whatever its name (logrotate's mail.log.2.gz); offsets count
//     decompressed bytes.
//   - Lines too long: a line longer than MaxLine is skipped whole and
//     counted, never buffered without bound (a binary file, an attack).
//   - CRLF line ends: the CR is dropped.
//   - A last line without its newline: a finished log is read to its end,
//     so the line is handed on.
//   - Replaced since the saved position: the fingerprint of the file's
//     first bytes no longer matches, or the file is shorter than the saved
//     offset (truncated); reading starts again from the beginning.
//
// Following a live file through rotation is the follower's job, built on
// the same Reader.
package input

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"syscall"
	"time"
)

// MaxLine is the longest line handed on; syslog daemons cut messages far
// shorter (rsyslog at 8 KiB by default).
const MaxLine = 64 << 10

// fingerprintSize is how many of a file's first bytes identify it.
const fingerprintSize = 1024

// Identity says which file a position belongs to.
type Identity struct {
	Device, Inode uint64
	// Fingerprint is the length of the prefix hashed (8 bytes, big
	// endian) and the first 16 bytes of its SHA-256.
	Fingerprint []byte
}

// Reader reads the lines of one log.
type Reader struct {
	Name    string    // as given: a path, or "-" for standard input
	ModTime time.Time // the file's modification time; zero for stdin
	ID      Identity

	file    *os.File
	br      *bufio.Reader
	gz      *gzip.Reader
	offset  int64 // of the next line
	line    int64 // number of the last line returned
	long    []byte
	Skipped int64 // lines skipped as too long
}

// Open opens a log. "-" is standard input.
func Open(name string) (*Reader, error) {
	r := &Reader{Name: name}
	if name == "-" {
		r.file = os.Stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		if st.IsDir() {
			f.Close()
			return nil, fmt.Errorf("%s: is a directory", name)
		}
		r.file, r.ModTime = f, st.ModTime()
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			r.ID.Device, r.ID.Inode = uint64(sys.Dev), sys.Ino
		}
	}
	r.br = bufio.NewReaderSize(r.file, 256<<10)
	if magic, err := r.br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(r.br)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		gz.Multistream(true)
		r.gz = gz
		r.br = bufio.NewReaderSize(gz, 256<<10)
	}
	if name != "-" {
		// Peek does not consume: the fingerprint costs no extra read.
		head, _ := r.br.Peek(fingerprintSize)
		r.ID.Fingerprint = Fingerprint(head)
	}
	return r, nil
}

// Fingerprint identifies a file by its first bytes.
func Fingerprint(head []byte) []byte {
	sum := sha256.Sum256(head)
	fp := binary.BigEndian.AppendUint64(nil, uint64(len(head)))
	return append(fp, sum[:16]...)
}

// printSize is the length of a Fingerprint.
const printSize = 24

// A saved position's fingerprint may go on with a second one: of the
// bytes, at most fingerprintSize, just before the position. A file
// rewritten in place that kept its first KiB is told from the one read by
// them.

// headPrint is the fingerprint of the first bytes.
func headPrint(fp []byte) []byte {
	if len(fp) > printSize {
		return fp[:printSize]
	}
	return fp
}

// WithTail returns fp followed by the fingerprint of the bytes of r just
// before offset, or fp alone when they cannot be read.
func WithTail(fp []byte, r io.ReaderAt, offset int64) []byte {
	n := min(offset, fingerprintSize)
	if n <= 0 || len(fp) < printSize {
		return fp
	}
	buf := make([]byte, n)
	if k, _ := r.ReadAt(buf, offset-n); int64(k) != n {
		return fp
	}
	return append(slices.Clip(headPrint(fp)), Fingerprint(buf)...)
}

// tailMatches reports whether the bytes of r before offset are those fp's
// tail names; a fingerprint without a tail matches.
func tailMatches(fp []byte, r io.ReaderAt, offset int64) bool {
	if len(fp) < 2*printSize {
		return true
	}
	tail := fp[printSize : 2*printSize]
	n := int64(fingerprintLen(tail))
	if n > offset || n > fingerprintSize {
		return false
	}
	buf := make([]byte, n)
	if k, _ := r.ReadAt(buf, offset-n); int64(k) != n {
		return false
	}
	return bytes.Equal(Fingerprint(buf), tail)
}

// Resume skips to offset, the start of line line+1, if the file is the one
// the position was saved for. It reports whether it did; when it did not,
// the file is read from its start.
func (r *Reader) Resume(fp []byte, offset, line int64) (bool, error) {
	if r.Name == "-" || offset < 0 || len(fp) < 8 {
		return false, nil
	}
	n := binary.BigEndian.Uint64(fp)
	if n > fingerprintSize || n == 0 && offset == 0 {
		// At 0, only the first bytes tell the file: with none, any would do.
		return false, nil
	}
	head, _ := r.br.Peek(int(n))
	if len(head) != int(n) || !bytes.Equal(Fingerprint(head), headPrint(fp)) {
		return false, nil // another file under the same name
	}
	if r.gz == nil {
		if st, err := r.file.Stat(); err != nil || st.Size() < offset {
			return false, err // truncated since
		}
		if !tailMatches(fp, r.file, offset) {
			return false, nil // rewritten in place, its first bytes kept
		}
		if _, err := r.file.Seek(offset, io.SeekStart); err != nil {
			return false, fmt.Errorf("%s: %w", r.Name, err)
		}
		r.br.Reset(r.file)
	} else if skipped, err := io.CopyN(io.Discard, r.br, offset); err != nil {
		if errors.Is(err, io.EOF) {
			return false, fmt.Errorf("%s: shorter than its saved position (%d of %d bytes)", r.Name, skipped, offset)
		}
		return false, fmt.Errorf("%s: %w", r.Name, err)
	}
	r.offset, r.line = offset, line
	return true, nil
}

// Next returns the next line without its line end, valid until the next
// call, or io.EOF at the end. Lines longer than MaxLine are skipped.
func (r *Reader) Next() ([]byte, error) {
	for {
		b, err := r.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			r.skipLong(b)
			continue
		}
		if len(b) == 0 {
			if err == nil || errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("%s: %w", r.Name, err)
		}
		r.offset += int64(len(b))
		r.line++
		if len(b) > MaxLine {
			r.Skipped++
			continue
		}
		b = bytes.TrimSuffix(b, []byte{'\n'})
		b = bytes.TrimSuffix(b, []byte{'\r'})
		return b, nil
	}
}

// skipLong consumes a line longer than the buffer, up to its end.
func (r *Reader) skipLong(first []byte) {
	n := int64(len(first))
	for {
		b, err := r.br.ReadSlice('\n')
		n += int64(len(b))
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		break
	}
	r.offset += n
	r.line++
	r.Skipped++
}

// Offset is where the next line starts; Line is the number of the last
// line returned (or skipped).
func (r *Reader) Offset() int64 { return r.offset }
func (r *Reader) Line() int64   { return r.line }

// Close closes the file (not standard input).
func (r *Reader) Close() error {
	if r.gz != nil {
		r.gz.Close()
	}
	if r.file != nil && r.file != os.Stdin {
		return r.file.Close()
	}
	return nil
}

// Head returns up to n of the next lines without consuming them, from what
// one read brings (at most 64 KiB): enough to tell a log's format.
func (r *Reader) Head(n int) ([][]byte, error) {
	if _, err := r.br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: %w", r.Name, err)
	}
	buf, _ := r.br.Peek(min(r.br.Buffered(), 64<<10))
	var lines [][]byte
	for len(buf) > 0 && len(lines) < n {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			lines = append(lines, buf)
			break
		}
		lines = append(lines, bytes.TrimSuffix(buf[:i], []byte{'\r'}))
		buf = buf[i+1:]
	}
	return lines, nil
}

// lineStartsAt reports whether a line starts at off: the byte before it
// ends one.
func lineStartsAt(f *os.File, off int64) bool {
	var prev [1]byte
	n, _ := f.ReadAt(prev[:], off-1)
	return n == 1 && prev[0] == '\n'
}

// isGzip reports whether f starts with the gzip magic.
func isGzip(f *os.File) bool {
	var magic [2]byte
	n, _ := f.ReadAt(magic[:], 0)
	return n == 2 && magic[0] == 0x1f && magic[1] == 0x8b
}

// beforeGzip is Before for a compressed file, whose offsets count
// decompressed bytes: it decompresses up to offset, keeping the lines of
// the last span bytes.
func beforeGzip(compressed io.Reader, offset, span int64, fn func(line []byte)) error {
	gz, err := gzip.NewReader(compressed)
	if err != nil {
		return err
	}
	defer gz.Close()
	r := &Reader{br: bufio.NewReaderSize(gz, 256<<10)}
	var keep [][]byte
	for r.Offset() < offset {
		start := r.Offset()
		l, err := r.Next()
		if err != nil {
			break
		}
		if start >= offset-span && r.Offset() <= offset {
			keep = append(keep, bytes.Clone(l))
		}
	}
	for _, l := range keep {
		fn(l)
	}
	return nil
}

// Before calls fn for the complete lines of the span bytes of a file that
// end at offset (decompressed bytes, for a compressed one): a resumed reader's parser reads them again, without
// their events, to learn what came just before (Postfix's smtpd lines of
// messages whose qmgr line is after the position).
func Before(path string, offset, span int64, fn func(line []byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return BeforeIn(f, offset, span, fn)
}

// BeforeIn is Before for a file already open: it reads with ReadAt only,
// so f may be shared with a reader.
func BeforeIn(f *os.File, offset, span int64, fn func(line []byte)) error {
	if isGzip(f) {
		return beforeGzip(io.NewSectionReader(f, 0, math.MaxInt64), offset, span, fn)
	}
	start := max(0, offset-span)
	buf := make([]byte, offset-start)
	if _, err := f.ReadAt(buf, start); err != nil {
		return err
	}
	if start > 0 && !lineStartsAt(f, start) { // the first line is cut: skip it
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			return nil
		}
		buf = buf[i+1:]
	}
	for len(buf) > 0 {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		if i <= MaxLine {
			fn(bytes.TrimSuffix(buf[:i], []byte{'\r'}))
		}
		buf = buf[i+1:]
	}
	return nil
}

// Buffered is how many bytes can be read without waiting for the file.
func (r *Reader) Buffered() int { return r.br.Buffered() }
