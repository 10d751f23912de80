package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfDropIns: a config file is merged over the built-in defaults and
// its conf.d/*.yaml over it, in name order; a rule or action of the same
// name replaces the earlier one, rules: [] removes them all, and run with
// no rule is an error.
func TestConfDropIns(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	os.WriteFile(log, nil, 0o644)
	main := filepath.Join(dir, "bombwatch.yaml")
	os.WriteFile(main, []byte("state: "+filepath.Join(dir, "state.db")+"\ninputs: [{path: "+log+"}]\n"), 0o644)

	// Only state and inputs: the built-in rules run.
	code, out, errOut := bombwatch(t, "check", "-c", main)
	if code != 0 || !strings.Contains(out, "name: sender-flood") || !strings.Contains(out, "name: stolen-account") || !strings.Contains(out, log) {
		t.Fatalf("check of state and inputs alone: exit %d\n%s%s", code, out, errOut)
	}

	confd := filepath.Join(dir, "conf.d")
	os.Mkdir(confd, 0o755)
	os.WriteFile(filepath.Join(confd, "10-local.yaml"), []byte(`rules:
  - {name: sender-flood, on: [accepted], key: sender, limit: 99, per: 1m, block: 1h, actions: [log, hook]}
  - {name: my-rule, on: [rejected], key: client_ip, limit: 7, per: 1m, actions: [log]}
actions:
  hook: {type: script, command: [/bin/true]}
`), 0o644)
	code, out, errOut = bombwatch(t, "check", "-c", main)
	if code != 0 || !strings.Contains(out, "limit: 99") || strings.Count(out, "name: sender-flood") != 1 ||
		!strings.Contains(out, "name: my-rule") || !strings.Contains(out, "name: stolen-account") || !strings.Contains(out, "hook:") {
		t.Errorf("check with a drop-in: exit %d\n%s%s", code, out, errOut)
	}

	// A later drop-in's error names its file, its line and its own rule.
	bad := filepath.Join(confd, "20-bad.yaml")
	os.WriteFile(bad, []byte("rules:\n  - {name: x, on: [accepted], key: sendr, limit: 1, per: 1m}\n"), 0o644)
	code, _, errOut = bombwatch(t, "check", "-c", main)
	if code != 2 || !strings.Contains(errOut, bad+":2: rules[0].key:") {
		t.Errorf("check with a bad drop-in: exit %d, %q", code, errOut)
	}

	// rules: [] means none; run refuses to run without a rule.
	os.WriteFile(bad, []byte("rules: []\n"), 0o644)
	code, out, _ = bombwatch(t, "check", "-c", main)
	if code != 0 || strings.Contains(out, "name:") {
		t.Errorf("check with rules: []: exit %d\n%s", code, out)
	}
	code, _, errOut = bombwatch(t, "run", "-c", main)
	if code != 2 || !strings.Contains(errOut, "rules: none") {
		t.Errorf("run with no rule: exit %d, %q", code, errOut)
	}
}
