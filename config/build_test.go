package config

import (
	"slices"
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
