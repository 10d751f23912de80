// Package safefile opens the files bombwatch writes as root — the state
// database and the MTA's maps — without following symbolic links, so that
// whoever can write to their directory cannot point them at another file.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
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
