package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestQmailUsersAreNeverUIDKeys: qmaild's and qmails's uids, looked up on
// the machine, are ignored as uid keys without the config naming them.
func TestQmailUsersAreNeverUIDKeys(t *testing.T) {
	old := lookupUID
	defer func() { lookupUID = old }()
	lookupUID = func(name string) (string, bool) {
		return map[string]string{"qmaild": "7791", "qmails": "7796"}[name], name != "alias"
	}
	cfg, err := Parse("t.yaml", []byte("ignore: [192.0.2.0/24]\nrules:\n  - {name: local, on: [accepted], key: uid, limit: 10, per: 1m}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Pipeline(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Ignore, []string{"192.0.2.0/24", "uid:7791", "uid:7796"}) {
		t.Errorf("ignore = %v", s.Ignore)
	}
	if !slices.Equal(cfg.Ignore, []string{"192.0.2.0/24"}) {
		t.Errorf("the config's own list changed: %v", cfg.Ignore)
	}
}

// TestInputWarnings: check says when an input is a directory, or not there
// yet (a file, or a glob matching nothing), and nothing for a readable log.
func TestInputWarnings(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	os.WriteFile(log, []byte("x\n"), 0o644)
	for path, want := range map[string]string{
		dir:                               "is a directory",
		filepath.Join(dir, "missing.log"): "does not exist yet",
		filepath.Join(dir, "none*.log"):   "matches no file yet",
		log:                               "",
		filepath.Join(dir, "mail*.log"):   "",
		"-":                               "",
		"journald":                        "",
	} {
		got := InputWarning(path)
		if want == "" && got != "" || want != "" && !strings.Contains(got, want) {
			t.Errorf("InputWarning(%s) = %q, want %q", path, got, want)
		}
	}
}

// TestActionKeysBelongToTheirType: a key of another action type is an
// error at its line, not ignored.
func TestActionKeysBelongToTheirType(t *testing.T) {
	_, err := Parse("c.yaml", []byte("actions:\n  hook:\n    type: script\n    command: [/bin/true]\n    ports: [25]\n  fw: {type: nft, map_type: hash}\n  m: {type: sendmail_access, map_type: hash}\n"))
	got := fmt.Sprint(err)
	for _, want := range []string{"c.yaml:5: actions.hook.ports: does not apply to a script action", "c.yaml:6: actions.fw.map_type: does not apply to a nft action"} {
		if !strings.Contains(got, want) {
			t.Errorf("error %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "actions.m.") {
		t.Errorf("sendmail_access refused its own map_type: %s", got)
	}
}
