package main

import (
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// TestReadOnlyCommandsNeverWrite: report, explain and bans list read a
// state they may not write (run as nobody from cron), never create one
// (a typo in --db), and refuse a SQLite file that is not bombwatch's
// rather than migrating it.
func TestReadOnlyCommandsNeverWrite(t *testing.T) {
	dir, cfg, _, db := floodState(t)

	typo := filepath.Join(dir, "typo.db")
	for _, args := range [][]string{{"bans", "list"}, {"report"}, {"explain", "flood@bomb.example"}} {
		code, _, errOut := bombwatch(t, append(args, "-c", cfg, "--db", typo)...)
		if code == 0 || !strings.Contains(errOut, "typo.db") {
			t.Errorf("%v on a missing state: exit %d, %q", args, code, errOut)
		}
		if _, err := os.Stat(typo); err == nil {
			t.Fatalf("%v created %s", args, typo)
		}
	}

	foreign := filepath.Join(dir, "foreign.db")
	fdb, err := sql.Open("sqlite3", foreign)
	if err != nil {
		t.Fatal(err)
	}
	fdb.Exec(`CREATE TABLE customers (name TEXT)`)
	fdb.Close()
	before, _ := os.ReadFile(foreign)
	for _, args := range [][]string{{"bans", "list"}, {"report"}, {"bans", "ban", "192.0.2.9"}} {
		code, _, errOut := bombwatch(t, append(args, "-c", cfg, "--db", foreign)...)
		if code == 0 || !strings.Contains(errOut, "not bombwatch's") {
			t.Errorf("%v on another program's SQLite file: exit %d, %q", args, code, errOut)
		}
	}
	if after, _ := os.ReadFile(foreign); string(after) != string(before) {
		t.Errorf("another program's SQLite file was changed")
	}

	// As an unprivileged user who may read the state but not write it or
	// its directory.
	if os.Getuid() != 0 {
		t.Log("not root: cannot run the commands as nobody; the rest is skipped")
		return
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Log("no setpriv: cannot run the commands as nobody; the rest is skipped")
		return
	}
	ro := filepath.Join(t.TempDir(), "ro")
	os.Mkdir(ro, 0o755)
	data, _ := os.ReadFile(db)
	os.WriteFile(filepath.Join(ro, "state.db"), data, 0o644)
	bin := filepath.Join(ro, "bombwatch")
	exe, _ := os.ReadFile(binary)
	os.WriteFile(bin, exe, 0o755)
	os.Chmod(filepath.Dir(ro), 0o755)
	os.Chmod(filepath.Dir(filepath.Dir(ro)), 0o755) // the test's temporary directories
	for _, args := range [][]string{{"bans", "list"}, {"report"}, {"explain", "flood@bomb.example"}} {
		cmd := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin}, append(args, "--db", filepath.Join(ro, "state.db"))...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%v as nobody: %v\n%s", args, err, out)
		}
	}
	if entries, _ := os.ReadDir(ro); len(entries) != 2 {
		t.Errorf("files beside the state after reading it: %v", entries)
	}
}

// floodState replays a log of one sender's flood into a state: its
// directory, config, log and database.
func floodState(t *testing.T) (dir, cfg, log, db string) {
	t.Helper()
	dir = t.TempDir()
	cfg = writeConfig(t, dir, "  - {path: /dev/null}\n")
	log = writeFile(t, "mail.log", string(floodLines("flood@bomb.example", mustTime("2026-11-20T10:00:00Z"), 40, 0)))
	db = filepath.Join(dir, "state.db")
	if code, _, errOut := bombwatch(t, "replay", "-c", cfg, "--db", db, log); code != 0 {
		t.Fatalf("replay: %s", errOut)
	}
	return dir, cfg, log, db
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
