package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoBuildOutputTracked fails when the repository tracks what a build
// or a test writes (a 6 MB parsers.test once crept in twice): test
// binaries, profiles, the bombwatch binary, or any file over 2 MB.
func TestNoBuildOutputTracked(t *testing.T) {
	out, err := exec.Command("git", "-C", "../..", "ls-files", "-z").Output()
	if err != nil {
		t.Skipf("not a git checkout, or no git: %v", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		base := filepath.Base(name)
		if strings.HasSuffix(name, ".test") || strings.HasSuffix(name, ".prof") || strings.HasSuffix(name, ".out") ||
			strings.HasPrefix(name, "bin/") || base == "bombwatch" && !strings.Contains(name, "/") {
			t.Errorf("%s is build output: remove it from git (it is in .gitignore)", name)
		}
		if st, err := os.Stat(filepath.Join("..", "..", name)); err == nil && st.Size() > 2<<20 {
			t.Errorf("%s is %d bytes: no source or sample is that large", name, st.Size())
		}
	}
}
