package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bombwatch/bombwatch/internal/netns"
)

// TestBans bans and unbans by hand, against the real nft in a private
// network namespace and a Postfix map: what is enforced changes, not only
// the table.
func TestBans(t *testing.T) {
	if !netns.Enter(t) {
		return
	}
	netns.NeedTool(t, "nft")
	dir := t.TempDir()
	access := filepath.Join(dir, "sender_access")
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
state: %s
ignore: [198.51.100.0/24]
actions:
  fw: {type: nft}
  senders: {type: postfix_map, path: %s, map_type: texthash}
`, filepath.Join(dir, "state.db"), access)), 0o644)
	code, out, errOut := bombwatch(t, "bans", "ban", "192.0.2.50", "--for", "2h", "-c", cfg, "--json")
	if code != 0 {
		t.Fatalf("ban: %d %s", code, errOut)
	}
	var bans []map[string]any
	if err := json.Unmarshal([]byte(out), &bans); err != nil || len(bans) != 1 {
		t.Fatalf("ban output %q: %v", out, err)
	}
	acts, _ := bans[0]["actions"].(map[string]any)
	// No table yet: ban makes it.
	if bans[0]["key_type"] != "client_ip" || acts["log"] != "applied" || acts["fw"] != "applied" {
		t.Errorf("ban: %v", bans[0])
	}
	if out, _ := exec.Command("nft", "list", "set", "inet", "bombwatch", "a4").CombinedOutput(); !strings.Contains(string(out), "192.0.2.50") {
		t.Errorf("a4 after ban:\n%s", out)
	}

	code, _, errOut = bombwatch(t, "bans", "ban", "bomber@spam.example", "-c", cfg)
	if code != 0 {
		t.Fatalf("ban sender: %s", errOut)
	}
	if got, _ := os.ReadFile(access); !strings.Contains(string(got), "bomber@spam.example\tREJECT") {
		t.Errorf("map after ban:\n%s", got)
	}
	code, out, _ = bombwatch(t, "bans", "list", "-c", cfg, "--json")
	if code != 0 || !strings.Contains(out, `"key":"192.0.2.50"`) || !strings.Contains(out, `"key":"bomber@spam.example"`) {
		t.Errorf("list: %s", out)
	}
	for _, bad := range []string{"127.0.0.1", "198.51.100.9", `"$(reboot)"@x`, "1.2.3.4/33", "@", "a b", "nodot", "x@", "@evil..example"} {
		if code, _, _ := bombwatch(t, "bans", "ban", bad, "-c", cfg); code != 2 {
			t.Errorf("ban %q: exit %d, want 2", bad, code)
		}
	}
	// Keys are typed as rules type them.
	for key, want := range map[string]string{"@Evil2.Example": `"key_type":"sender_domain","key":"evil2.example"`,
		"192.0.2.77/24": `"key_type":"client_net","key":"192.0.2.0/24"`, "Bob@Evil3.Example": `"key_type":"sender","key":"Bob@evil3.example"`} {
		if code, out, errOut := bombwatch(t, "bans", "ban", key, "-c", cfg, "--json"); code != 0 || !strings.Contains(out, want) {
			t.Errorf("ban %s: exit %d, %s %s; want %s", key, code, out, errOut, want)
		}
	}
	if code, out, _ := bombwatch(t, "bans", "ban", "dave", "--type", "sasl_user", "-c", cfg, "--json"); code != 0 || !strings.Contains(out, `"key_type":"sasl_user"`) {
		t.Errorf("ban --type sasl_user: exit %d, %s", code, out)
	}
	// An action that fails: exit 1, one line, and the block saved with it failed.
	broken := filepath.Join(dir, "broken.yaml")
	os.WriteFile(broken, []byte(fmt.Sprintf("state: %s\nactions:\n  senders: {type: postfix_map, path: %s, map_type: texthash}\n",
		filepath.Join(dir, "state.db"), filepath.Join(dir, "no", "such", "dir", "access"))), 0o644)
	code, _, errOut = bombwatch(t, "bans", "ban", "late@spam.example", "-c", broken)
	if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") > 1 || !strings.Contains(errOut, "not enforced: senders:") {
		t.Errorf("ban with a failing action: exit %d, stderr %q", code, errOut)
	}
	if _, out, _ := bombwatch(t, "bans", "list", "-c", cfg, "--json"); !strings.Contains(out, `"key":"late@spam.example"`) || !strings.Contains(out, `"senders":"failed"`) {
		t.Errorf("the block of a failed ban is not saved as failed: %s", out)
	}
	if code, _, errOut := bombwatch(t, "bans", "unban", "bomber@spam.example", "-c", cfg); code != 0 {
		t.Fatalf("unban: %s", errOut)
	}
	if got, _ := os.ReadFile(access); strings.Contains(string(got), "bomber@") {
		t.Errorf("map after unban:\n%s", got)
	}
	if code, _, _ := bombwatch(t, "bans", "unban", "bomber@spam.example", "-c", cfg); code != 1 {
		t.Errorf("a second unban: exit %d, want 1", code)
	}
}

// TestBansNFT: with bombwatch's table in place, ban adds the element and
// unban removes it.
func TestBansNFT(t *testing.T) {
	if !netns.Enter(t) {
		return
	}
	netns.NeedTool(t, "nft")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("state: %s\nactions:\n  fw: {type: nft}\nrules:\n  - {name: c, on: [accepted], key: client_ip, limit: 5, per: 1m, actions: [fw]}\n",
		filepath.Join(dir, "state.db"))), 0o644)
	// The daemon makes the table at start; one replay with --act does too.
	setupTable(t, cfg)
	if code, _, errOut := bombwatch(t, "bans", "ban", "203.0.113.77", "--for", "1h", "-c", cfg); code != 0 {
		t.Fatalf("ban: %s", errOut)
	}
	set := func() string {
		out, _ := exec.Command("nft", "list", "set", "inet", "bombwatch", "a4").CombinedOutput()
		return string(out)
	}
	if s := set(); !strings.Contains(s, "203.0.113.77 timeout 1h") {
		t.Errorf("after ban:\n%s", s)
	}
	if code, _, errOut := bombwatch(t, "bans", "unban", "203.0.113.77", "-c", cfg); code != 0 {
		t.Fatalf("unban: %s", errOut)
	}
	if s := set(); strings.Contains(s, "203.0.113.77") {
		t.Errorf("after unban:\n%s", s)
	}
}

func sleep() { exec.Command("sleep", "0.1").Run() }

func setupTable(t *testing.T, cfg string) {
	t.Helper()
	out, err := exec.Command(binary, "run", "-c", cfg, "--cleanup").CombinedOutput()
	if err != nil {
		t.Fatalf("cleanup: %v %s", err, out)
	}
	// run makes the table at start: start it and stop it.
	d := startDaemon(t, cfg)
	for range 50 {
		if o, _ := exec.Command("nft", "list", "table", "inet", "bombwatch").CombinedOutput(); strings.Contains(string(o), "set a4") {
			break
		}
		sleep()
	}
	d.stop(t)
}
