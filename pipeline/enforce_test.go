package pipeline

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
