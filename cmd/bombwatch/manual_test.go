package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// manualConfig is a config whose sender rule blocks in a map and runs a
// hook that counts its runs, and mails a notice through a sendmail that
// counts them too.
func manualConfig(t *testing.T, dir, log string) (cfg, access, hookRuns, notices string) {
	t.Helper()
	access = filepath.Join(dir, "sender_access")
	hookRuns = filepath.Join(dir, "hook.runs")
	notices = filepath.Join(dir, "notices")
	hook, sendmail := filepath.Join(dir, "hook.sh"), filepath.Join(dir, "sendmail.sh")
	os.WriteFile(hook, []byte("#!/bin/sh\necho \"$1 $2\" >> "+hookRuns+"\n"), 0o755)
	os.WriteFile(sendmail, []byte("#!/bin/sh\ncat >> "+notices+"\necho ---- >> "+notices+"\n"), 0o755)
	cfg = filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`state: %s
timezone: UTC
inputs: [{path: %s, start: beginning, poll: 20ms}]
rules:
  - {name: sender, on: [accepted], key: sender, limit: 5, per: 1m, block: 1h, enforce: sender, actions: [log, senders, hook, notice]}
actions:
  senders: {type: postfix_map, path: %s, map_type: texthash}
  hook: {type: script, command: [%s, "{event}", "{key}"]}
  notice: {type: mail, to: [postmaster@example.org], sendmail: %s}
`, filepath.Join(dir, "state.db"), log, access, hook, sendmail)), 0o644)
	return cfg, access, hookRuns, notices
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fileHas(path, s string) bool {
	b, _ := os.ReadFile(path)
	return strings.Contains(string(b), s)
}

func bansList(t *testing.T, cfg string) []banJSON {
	t.Helper()
	code, out, errOut := bombwatch(t, "bans", "list", "-c", cfg, "--json")
	if code != 0 {
		t.Fatalf("bans list: %d %s", code, errOut)
	}
	var bans []banJSON
	if err := json.Unmarshal([]byte(out), &bans); err != nil {
		t.Fatalf("bans list %q: %v", out, err)
	}
	return bans
}

// TestBanWhileRunningIsNeverLost: a ban made by hand while the daemon runs
// keeps its ID when the daemon blocks next, is seen by the daemon within a
// second or so without SIGHUP, survives a reload and a restart in the map,
// and is lifted by the daemon on time; an unban by hand is seen too.
func TestBanWhileRunningIsNeverLost(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	appendFile(t, log, nil)
	cfg, access, _, _ := manualConfig(t, dir, log)
	d := startDaemon(t, cfg)
	waitUntil(t, "the daemon to run", func() bool { return strings.Contains(d.stderr.String(), "msg=running") })

	code, out, errOut := bombwatch(t, "bans", "ban", "manual3@spam.example", "--for", "10m", "-c", cfg, "--json")
	if code != 0 {
		t.Fatalf("ban: %d %s", code, errOut)
	}
	var banned []banJSON
	json.Unmarshal([]byte(out), &banned)
	if len(banned) != 1 {
		t.Fatalf("ban printed %q", out)
	}
	manualID := banned[0].ID
	waitUntil(t, "the daemon to see the ban", func() bool { return strings.Contains(d.stderr.String(), "ban made by hand") })

	// The daemon's next block takes another ID.
	appendFile(t, log, floodLines("flood@bomb.example", time.Now().UTC(), 8, 0))
	waitUntil(t, "the daemon's block", func() bool { return fileHas(access, "flood@bomb.example") })
	waitUntil(t, "both blocks listed", func() bool { return len(bansList(t, cfg)) == 2 })
	for _, b := range bansList(t, cfg) {
		if b.Key == "flood@bomb.example" && b.ID == manualID {
			t.Errorf("the daemon's block took the manual ban's ID %d", manualID)
		}
	}
	if !fileHas(access, "manual3@spam.example") {
		t.Fatalf("the map lost the manual ban:\n%s", must(os.ReadFile(access)))
	}

	// A reload and a restart keep it in the map.
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the reload", func() bool { return strings.Count(d.stderr.String(), "msg=running") == 2 })
	if !fileHas(access, "manual3@spam.example") {
		t.Errorf("after SIGHUP the map lost the manual ban:\n%s", must(os.ReadFile(access)))
	}
	d.stop(t)
	d = startDaemon(t, cfg)
	waitUntil(t, "the restart", func() bool { return strings.Contains(d.stderr.String(), "msg=running") })
	if !fileHas(access, "manual3@spam.example") {
		t.Errorf("after a restart the map lost the manual ban:\n%s", must(os.ReadFile(access)))
	}

	// A short ban is lifted by the daemon on time, from the map too; an
	// unban by hand is seen.
	if code, _, errOut := bombwatch(t, "bans", "ban", "short@spam.example", "--for", "2s", "-c", cfg); code != 0 {
		t.Fatalf("ban: %s", errOut)
	}
	if !fileHas(access, "short@spam.example") {
		t.Fatalf("ban did not reach the map")
	}
	waitUntil(t, "the daemon to lift the short ban", func() bool { return !fileHas(access, "short@spam.example") })
	if code, _, errOut := bombwatch(t, "bans", "unban", "manual3@spam.example", "-c", cfg); code != 0 {
		t.Fatalf("unban: %s", errOut)
	}
	waitUntil(t, "the daemon to see the unban", func() bool { return strings.Contains(d.stderr.String(), "block lifted by hand") })
	d.stop(t)
	for _, b := range bansList(t, cfg) {
		if b.Key != "flood@bomb.example" {
			t.Errorf("in force after its end or unban: %+v", b)
		}
	}
}

// TestReloadAndRestartRunNothingAgain: a block's hook runs once and its
// notice goes once; a SIGHUP that changes nothing, a kill -9 and a
// restart run neither again and leave the map file as it was.
func TestReloadAndRestartRunNothingAgain(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	appendFile(t, log, floodLines("flood@bomb.example", time.Now().UTC(), 8, 0))
	cfg, access, hookRuns, notices := manualConfig(t, dir, log)
	d := startDaemon(t, cfg)
	waitUntil(t, "the hook", func() bool { return fileHas(hookRuns, "block flood@bomb.example") })
	waitUntil(t, "the notice", func() bool { return fileHas(notices, "----") })
	waitUntil(t, "the block applied", func() bool {
		b := bansList(t, cfg)
		return len(b) == 1 && b[0].Actions["hook"] == "applied" && b[0].Actions["notice"] == "applied" && b[0].Actions["senders"] == "applied"
	})
	mapBefore, _ := os.Stat(access)
	runsOf := func() int { return strings.Count(string(must(os.ReadFile(hookRuns))), "\n") }
	noticesOf := func() int { return strings.Count(string(must(os.ReadFile(notices))), "----") }

	d.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the reload", func() bool { return strings.Count(d.stderr.String(), "msg=running") == 2 })
	time.Sleep(300 * time.Millisecond)
	d.kill()
	d = startDaemon(t, cfg)
	waitUntil(t, "the restart", func() bool { return strings.Contains(d.stderr.String(), "msg=running") })
	time.Sleep(300 * time.Millisecond)
	d.stop(t)

	if n := runsOf(); n != 1 {
		t.Errorf("the hook ran %d times, want once:\n%s", n, must(os.ReadFile(hookRuns)))
	}
	if n := noticesOf(); n != 1 {
		t.Errorf("%d notices, want one", n)
	}
	mapAfter, _ := os.Stat(access)
	if !mapAfter.ModTime().Equal(mapBefore.ModTime()) || !os.SameFile(mapBefore, mapAfter) {
		t.Errorf("the map was written again: %v then %v", mapBefore.ModTime(), mapAfter.ModTime())
	}
	if !fileHas(access, "flood@bomb.example") {
		t.Errorf("the map lost the block")
	}
}
