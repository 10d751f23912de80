package pipeline_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/actions"
	"github.com/bombwatch/bombwatch/state"
)

// mapEntries returns the keys in bombwatch's part of a texthash map.
func mapEntries(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var keys []string
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			keys = append(keys, strings.SplitN(l, "\t", 2)[0])
		}
	}
	slices.Sort(keys)
	return keys
}

// TestSenderBlockEnforcedOnClients: by default a sender over its limit is
// blocked in the map through the client addresses that sent its mail — the
// one that crossed the limit, then each that sends it while the block is in
// force — never as the sender, which anyone can forge; every member is
// lifted with the block, and the members survive a restart.
func TestSenderBlockEnforcedOnClients(t *testing.T) {
	dir := t.TempDir()
	mapPath := filepath.Join(dir, "access")
	cfg := mustConfig(t, fmt.Sprintf(`
rules:
  - {name: s, on: [accepted], key: sender, limit: 2, per: 1m, block: 10m, actions: [log, m]}
actions:
  m: {type: postfix_map, path: %s, map_type: texthash}
`, mapPath))
	if cfg.Rules[0].Enforce != "clients" {
		t.Fatalf("default enforce = %q, want clients", cfg.Rules[0].Enforce)
	}
	store := state.NewMemory()
	exec := &actions.Executor{Act: true, Log: slog.New(slog.DiscardHandler)}
	lines := messages(3, 0, 1, "boss@victim.example", "192.0.2.1")                   // blocked at the 3rd
	lines = append(lines, messages(2, 10, 1, "boss@victim.example", "192.0.2.2")...) // a second client of the blocked sender
	lines = append(lines, messages(1, 20, 1, "boss@victim.example", "127.0.0.1")...) // loopback: never enforced
	got, _ := replay(t, cfg, store, exec, writeLog(t, lines...))
	if want := []string{"192.0.2.1", "192.0.2.2"}; !slices.Equal(mapEntries(t, mapPath), want) {
		t.Errorf("map holds %v, want %v", mapEntries(t, mapPath), want)
	}
	if len(got) != 1 || got[0].KeyType != "sender" || got[0].Key != "boss@victim.example" || !slices.Equal(got[0].Members, []string{"192.0.2.1"}) {
		t.Fatalf("detections %+v", got)
	}
	blocks, _ := store.Blocks(true, time.Time{})
	if len(blocks) != 1 || !slices.Equal(blocks[0].Members, []string{"192.0.2.1", "192.0.2.2"}) || blocks[0].Actions["m"] != state.Applied {
		t.Fatalf("saved blocks %+v", blocks)
	}

	// A restart: the members come back from the store, and the block's
	// end lifts every one of them.
	later := writeLog(t, messages(1, 1200, 1, "other@x.example", "198.51.100.1")...)
	got, _ = replay(t, cfg, store, exec, later)
	if len(got) != 1 || got[0].Event != "unblock" || !slices.Equal(got[0].Members, []string{"192.0.2.1", "192.0.2.2"}) {
		t.Fatalf("detections after the restart %+v", got)
	}
	if e := mapEntries(t, mapPath); len(e) != 0 {
		t.Errorf("map still holds %v after the block ended", e)
	}
}

// TestSenderBlockEnforcedOnSender: enforce: sender puts the sender itself
// in the map, for every client.
func TestSenderBlockEnforcedOnSender(t *testing.T) {
	mapPath := filepath.Join(t.TempDir(), "access")
	cfg := mustConfig(t, fmt.Sprintf(`
rules:
  - {name: s, on: [accepted], key: sender, enforce: sender, limit: 2, per: 1m, block: 10m, actions: [log, m]}
actions:
  m: {type: postfix_map, path: %s, map_type: texthash}
`, mapPath))
	exec := &actions.Executor{Act: true, Log: slog.New(slog.DiscardHandler)}
	got, _ := replay(t, cfg, nil, exec, writeLog(t, messages(3, 0, 1, "bomber@spam.example", "192.0.2.1")...))
	if want := []string{"bomber@spam.example"}; !slices.Equal(mapEntries(t, mapPath), want) {
		t.Errorf("map holds %v, want %v", mapEntries(t, mapPath), want)
	}
	if len(got) != 1 || got[0].Members != nil {
		t.Errorf("detections %+v", got)
	}
}

// TestSharedActionLiftedByTheLastBlock: two blocks of one address by two
// rules share a map and a script action. The shorter block's end lifts
// nothing while the longer is in force; the action is applied for the
// longer one's end; the last end lifts it.
func TestSharedActionLiftedByTheLastBlock(t *testing.T) {
	dir := t.TempDir()
	mapPath, calls := filepath.Join(dir, "access"), filepath.Join(dir, "calls")
	cfg := mustConfig(t, fmt.Sprintf(`
rules:
  - {name: long, on: [accepted], key: client_ip, limit: 3, per: 1m, block: 1h, actions: [log, m, hook]}
  - {name: short, on: [accepted], key: client_ip, limit: 4, per: 1m, block: 10m, actions: [log, m, hook]}
actions:
  m: {type: postfix_map, path: %s, map_type: texthash}
  hook:
    type: script
    command: [/bin/sh, -c, 'echo "$1 $2 $3" >> %s', sh, "{event}", "{key}", "{until}"]
    unblock_command: [/bin/sh, -c, 'echo "$1 $2" >> %s', sh, "{event}", "{key}"]
`, mapPath, calls, calls))
	store := state.NewMemory()
	exec := &actions.Executor{Act: true, Log: slog.New(slog.DiscardHandler)}
	stage := func(lines []string, wantMap []string) {
		t.Helper()
		replay(t, cfg, store, exec, writeLog(t, lines...))
		if got := mapEntries(t, mapPath); !slices.Equal(got, wantMap) {
			t.Errorf("map holds %v, want %v", got, wantMap)
		}
	}
	stage(messages(5, 0, 1, "a@x.example", "192.0.2.5"), []string{"192.0.2.5"}) // long at the 4th, short at the 5th
	stage(messages(1, 15*60, 1, "b@x.example", "198.51.100.1"), []string{"192.0.2.5"})
	stage(messages(1, 2*3600, 1, "c@x.example", "198.51.100.2"), nil)
	data, _ := os.ReadFile(calls)
	got := strings.Split(strings.TrimSpace(string(data)), "\n")
	want := []string{
		"block 192.0.2.5 2026-11-20T11:00:03Z",
		"block 192.0.2.5 2026-11-20T11:00:03Z", // the short block is applied for the long one's end
		"unblock 192.0.2.5",                    // once, at the long one's end
	}
	if !slices.Equal(got, want) {
		t.Errorf("script calls\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestNetworkBlockEnforcedOnMembers: by default a network over its limit
// is blocked through its addresses that sent within the window, and each
// that sends while the block is in force — not its neighbours that sent
// nothing; enforce: network blocks the network itself.
func TestNetworkBlockEnforcedOnMembers(t *testing.T) {
	for _, enforce := range []string{"", "network"} {
		t.Run("enforce "+enforce, func(t *testing.T) {
			dir := t.TempDir()
			mapPath := filepath.Join(dir, "access")
			extra := ""
			if enforce != "" {
				extra = ", enforce: " + enforce
			}
			cfg := mustConfig(t, fmt.Sprintf(`
rules:
  - {name: botnet, on: [accepted], key: client_net, measure: distinct, of: client_ip, limit: 3, per: 10m, block: 1h, actions: [log, m]%s}
actions:
  m: {type: postfix_map, path: %s, map_type: texthash}
`, extra, mapPath))
			exec := &actions.Executor{Act: true, Log: slog.New(slog.DiscardHandler)}
			var lines []string
			lines = append(lines, messages(1, 0, 1, "a@spam.example", "203.0.113.250")...) // long before: out of the window
			for i := range 4 {                                                             // four bots within ten minutes: the 4th crosses
				lines = append(lines, messages(1, 1200+i*60, 1, fmt.Sprintf("b%d@spam.example", i), fmt.Sprintf("203.0.113.%d", 10+i))...)
			}
			lines = append(lines, messages(1, 1500, 1, "c@spam.example", "203.0.113.77")...) // a new bot while blocked
			lines = append(lines, messages(1, 1510, 1, "d@ok.example", "198.51.100.1")...)   // another network
			replay(t, cfg, state.NewMemory(), exec, writeLog(t, lines...))
			want := []string{"203.0.113.10", "203.0.113.11", "203.0.113.12", "203.0.113.13", "203.0.113.77"}
			if enforce == "network" {
				want = []string{"203.0.113"}
			}
			if got := mapEntries(t, mapPath); !slices.Equal(got, want) {
				t.Errorf("map holds %v, want %v", got, want)
			}
		})
	}
}
