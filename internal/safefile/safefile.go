// Package safefile opens the files bombwatch writes as root — the state
// database, its lock and the MTA's maps — without following symbolic
// links, so that whoever can write to their directory cannot point them at
// another file; and it keeps a state to one writer at a time.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// NotLink returns an error naming the first path that is a symbolic link,
// and for each existing file that is not a regular file. Paths that do not
// exist pass.
func NotLink(paths ...string) error {
	for _, p := range paths {
		st, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return err
		case st.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link: refused (bombwatch writes it as root)", p)
		case !st.Mode().IsRegular():
			return fmt.Errorf("%s is not a regular file", p)
		}
	}
	return nil
}

// SafeDir returns an error when dir may be written by every user: there,
// another user could swap a file for a link between bombwatch's check and
// a program's write.
func SafeDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("%s is writable by every user: refused for a file bombwatch writes as root", dir)
	}
	return nil
}

// ReadFile reads a file without following a symbolic link at its name. A
// missing file reads as empty, with the error fs.ErrNotExist.
func ReadFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s is a symbolic link: refused (bombwatch writes it as root)", path)
		}
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Create makes path with mode when it does not exist (never through a
// link), and checks that what is there is a regular file: the state
// database is made 0640 here rather than with the umask's 0644, and SQLite
// gives its -wal and -shm files the database's mode.
func Create(path string, mode fs.FileMode) error {
	if err := NotLink(path, path+"-wal", path+"-shm", path+"-journal"); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
	if errors.Is(err, fs.ErrExist) {
		return NotLink(path)
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// Lock is an exclusive lock on a state: one daemon, or one replay, writes a
// state at a time.
type Lock struct {
	Path string
	// Noted is the state's generation the last holder noted (see Note),
	// 0 when none.
	Noted int64
	file  *os.File
	pid   int
}

// LockState takes the exclusive lock beside a state database (its path
// with ".lock" added), or says who holds it. The lock is the kernel's
// (flock): it goes with the process, kill -9 included.
func LockState(state string) (*Lock, error) {
	path := state + ".lock"
	if err := NotLink(path); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock the state: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another bombwatch"
			if fields := strings.Fields(string(holder)); len(fields) > 0 {
				who += " (pid " + fields[0] + ")"
			}
			return nil, fmt.Errorf("state %s is in use by %s: one bombwatch writes a state at a time", state, who)
		}
		return nil, fmt.Errorf("lock the state %s: %w", state, err)
	}
	l := &Lock{Path: path, file: f, pid: os.Getpid()}
	prev, _ := io.ReadAll(io.LimitReader(f, 64))
	if fields := strings.Fields(string(prev)); len(fields) == 2 {
		l.Noted, _ = strconv.ParseInt(fields[1], 10, 64)
	}
	l.Note(l.Noted)
	return l, nil
}

// Note keeps beside the state the generation it was saved at: a state
// found older at the next start lost its last saves. The file holds "PID
// GENERATION".
func (l *Lock) Note(generation int64) {
	if l == nil || l.file == nil {
		return
	}
	l.file.Truncate(0)
	l.file.WriteAt(fmt.Appendf(nil, "%d %d\n", l.pid, generation), 0)
}

// Unlock releases the lock; a nil Lock is no lock.
func (l *Lock) Unlock() {
	if l != nil && l.file != nil {
		l.file.Close()
		l.file = nil
	}
}
