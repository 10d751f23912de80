package sqlite

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bombwatch/bombwatch/state"
)

// TestStateFilesArePrivate: a new state database, and its -wal and -shm,
// are 0640 whatever the umask allows, since they name who was blocked.
func TestStateFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(&state.Batch{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o027 != 0 {
			t.Errorf("%s: mode %v, want at most 0640", filepath.Base(p), st.Mode().Perm())
		}
	}
}

// TestStateRefusesLinks: a state path, or its -wal, that is a symbolic
// link is refused, and the file it points to is left alone.
func TestStateRefusesLinks(t *testing.T) {
	for _, suffix := range []string{"", "-wal"} {
		dir := t.TempDir()
		target := filepath.Join(dir, "target")
		if err := os.WriteFile(target, []byte("not a database"), 0o600); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "state.db")
		if err := os.Symlink(target, path+suffix); err != nil {
			t.Fatal(err)
		}
		if s, err := Open(path); err == nil || !strings.Contains(err.Error(), "symbolic link") {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open with %q a link: %v", "state.db"+suffix, err)
		}
		if got, _ := os.ReadFile(target); string(got) != "not a database" {
			t.Errorf("the linked file changed: %q", got)
		}
	}
}
