// Package corpus finds the shared corpus of real MTA logs for tests.
//
// The corpus lives beside the repository (../shared/corpus), not in it: its
// files come from other projects under their own licences. CI has it there;
// a developer without it sees the tests that need it skip, with the reason.
package corpus

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the corpus directory, or skips the test when there is none.
// Under CI (CI set) a missing corpus fails the test instead: a green run
// must not hide tests that did not run.
func Dir(tb testing.TB) string {
	tb.Helper()
	if d := os.Getenv("BOMBWATCH_CORPUS"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		c := filepath.Join(d, "..", "shared", "corpus")
		if _, err := os.Stat(filepath.Join(c, "SOURCES.md")); err == nil {
			return c
		}
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil || d == filepath.Dir(d) {
			break
		}
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("the shared corpus is not beside the repository (../shared/corpus from %s); set BOMBWATCH_CORPUS", wd)
	}
	tb.Skipf("the shared corpus is not beside the repository (../shared/corpus from %s); set BOMBWATCH_CORPUS to run this test", wd)
	return ""
}
