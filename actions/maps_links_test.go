package actions

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMapNeverFollowsLinks: a map, or the file postmap would compile it
// into, that is a symbolic link is refused, and the file it points to is
// neither read into the map nor written; so is a map in a directory every
// user may write to.
func TestMapNeverFollowsLinks(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(secret, []byte("root:secret-hash\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	block := detection("bomber@spam.example")
	for _, c := range []struct {
		name string
		link string // relative to the map: "" the map itself, or ".db"
	}{{"map", ""}, {"compiled map", ".db"}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "bombwatch_senders")
			if err := os.Symlink(secret, path+c.link); err != nil {
				t.Fatal(err)
			}
			m := &Map{ActionName: "pf", Kind: "postfix_map", Path: path, MapType: "hash", Guard: NewGuard(nil), Compiler: "/bin/false"}
			err := m.Run(context.Background(), block)
			if err == nil || !strings.Contains(err.Error(), "symbolic link") {
				t.Fatalf("Run through a link: %v", err)
			}
			if got, _ := os.ReadFile(secret); string(got) != "root:secret-hash\n" {
				t.Errorf("the linked file changed: %q", got)
			}
			if c.link == "" {
				if st, _ := os.Lstat(path); st.Mode()&os.ModeSymlink == 0 {
					t.Errorf("the link was replaced by a map")
				}
			}
		})
	}
	t.Run("world-writable directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		m := &Map{ActionName: "pf", Kind: "postfix_map", Path: filepath.Join(dir, "m"), MapType: "texthash", Guard: NewGuard(nil)}
		if err := m.Run(context.Background(), block); err == nil || !strings.Contains(err.Error(), "writable by every user") {
			t.Fatalf("Run in a world-writable directory: %v", err)
		}
	})
	t.Run("plain file still works", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "m")
		m := &Map{ActionName: "pf", Kind: "postfix_map", Path: path, MapType: "texthash", Guard: NewGuard(nil)}
		if err := m.Run(context.Background(), block); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(path); !strings.Contains(string(got), "bomber@spam.example\tREJECT") {
			t.Errorf("map: %q", got)
		}
	})
}
