package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHooksRunWithoutTheDaemonsCapabilities: a daemon given CAP_NET_ADMIN
// as an ambient capability (the packaged unit's, for nft and iptables)
// runs its hooks without it. Run as an unprivileged user through setpriv,
// as systemd would start it.
func TestHooksRunWithoutTheDaemonsCapabilities(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if os.Geteuid() != 0 || err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("needs root and setpriv (util-linux): euid %d, %v", os.Geteuid(), err)
		}
		t.Skip("needs root and setpriv (util-linux) to give a process an ambient capability")
	}
	// A directory the unprivileged user reaches (t.TempDir's parent is
	// its owner's only).
	dir, err := os.MkdirTemp("", "bombwatch-hook-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o777)
	caps := filepath.Join(dir, "caps")
	var log strings.Builder
	for i := range 4 {
		fmt.Fprintf(&log, "2026-11-20T10:00:0%dZ mx postfix/smtpd[1]: 4ABC%d: client=c[192.0.2.7]\n", i, i)
		fmt.Fprintf(&log, "2026-11-20T10:00:0%dZ mx postfix/qmgr[2]: 4ABC%d: from=<x@example.org>, size=1, nrcpt=1 (queue active)\n", i, i)
	}
	logPath, cfg := filepath.Join(dir, "mail.log"), filepath.Join(dir, "c.yaml")
	os.WriteFile(logPath, []byte(log.String()), 0o644)
	os.WriteFile(cfg, []byte(fmt.Sprintf(`actions:
  hook: {type: script, command: [/bin/sh, -c, "grep CapAmb /proc/self/status >> %s; grep CapAmb /proc/$PPID/status >> %s"]}
rules:
  - {name: r, on: [accepted], key: sender, limit: 2, per: 1m, block: 1h, actions: [hook]}
`, caps, caps)), 0o644)
	bin := filepath.Join(dir, "bombwatch")
	data, _ := os.ReadFile(binary)
	os.WriteFile(bin, data, 0o755)
	out, err := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=+net_admin", "--ambient-caps=+net_admin",
		bin, "replay", "--act", "-c", cfg, logPath).CombinedOutput()
	if err != nil {
		t.Fatalf("replay under setpriv: %v\n%s", err, out)
	}
	got, err := os.ReadFile(caps)
	if err != nil {
		t.Fatalf("the hook did not run: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	// The first is the hook's, the second its parent's: the daemon, which
	// had CAP_NET_ADMIN (bit 12) — else the test tells nothing.
	if len(lines) != 2 || !strings.HasSuffix(lines[0], "0000000000000000") || !strings.HasSuffix(lines[1], "0000000000001000") {
		t.Errorf("ambient capabilities of the hook, then the daemon: %q", lines)
	}
}
