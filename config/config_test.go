package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/internal/corpus"
)

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if len(c.Rules) == 0 || len(c.Rules[0].Windows) == 0 || c.Rules[0].Windows[0].Limit != 30 || time.Duration(c.Rules[0].Windows[0].Per) != time.Minute {
		t.Errorf("default rules = %+v", c.Rules)
	}
	if _, err := c.YAML(); err != nil {
		t.Error(err)
	}
}

func TestErrorsNameFileLineAndField(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "stat: x\n", "c.yaml:1: stat: unknown key"},
		{"unknown rule key", "rules:\n  - name: a\n    on: [accepted]\n    key: sender\n    limit: 1\n    per: 1m\n    limt: 3\n",
			"c.yaml:7: rules[0].limt: unknown key"},
		{"limit not a number", "rules:\n  - name: a\n    on: [accepted]\n    key: sender\n    limit: many\n    per: 1m\n",
			`c.yaml:5: rules[0].limit: must be a whole number, not "many"`},
		{"bad duration", "rules:\n  - {name: a, on: [accepted], key: sender, limit: 1, per: soon}\n",
			`c.yaml:2: rules[0].per: invalid duration "soon"`},
		{"unknown key type", "rules:\n  - {name: a, on: [accepted], key: helo, limit: 1, per: 1m}\n",
			`c.yaml:2: rules[0].key: "helo" is not a key`},
		{"unknown kind", "rules:\n  - {name: a, on: [sent], key: sender, limit: 1, per: 1m}\n",
			`c.yaml:2: rules[0].on: "sent" is not an event kind`},
		{"undefined action", "rules:\n  - {name: a, on: [accepted], key: sender, limit: 1, per: 1m, actions: [fw]}\n",
			`c.yaml:2: rules[0].actions: "fw" is not defined under actions`},
		{"script without command", "actions:\n  hook: {type: script}\n", "c.yaml:2: actions.hook.command: is required"},
		{"bad ignore", "ignore: [10.0.0.0/33]\n", `c.yaml:1: ignore[0]: "10.0.0.0/33" is not a valid CIDR`},
		{"bad format", "inputs:\n  - {path: /x, format: exim}\n", `c.yaml:2: inputs[0].format: "exim" is not one of`},
		{"syntax", "rules: [\n", "c.yaml:1: (syntax):"},
		{"duplicate rule", "rules:\n  - {name: a, on: [accepted], key: sender, limit: 1, per: 1m}\n  - {name: a, on: [accepted], key: sender, limit: 1, per: 1m}\n",
			`c.yaml:3: rules[1].name: "a" is used by another rule`},
		{"bad release", "rules:\n  - {name: a, on: [accepted], key: sender, limit: 1, per: 1m, release: above}\n",
			`c.yaml:2: rules[0].release: "above" is not a release (below)`},
		{"burst without hard", "rules:\n  - {name: a, on: [accepted], key: sender, measure: burst, soft: 1}\n",
			"c.yaml:2: rules[0].hard: is required for the burst measure"},
		{"burst with limit", "rules:\n  - {name: a, on: [accepted], key: sender, measure: burst, hard: 3, limit: 4}\n",
			"c.yaml:2: rules[0].limit: does not apply to the burst measure"},
		{"soft without burst", "rules:\n  - {name: a, on: [accepted], key: sender, limit: 1, per: 1m, soft: 1}\n",
			"c.yaml:2: rules[0].soft: only applies to the burst measure"},
		{"windows and limit", "rules:\n  - {name: a, on: [accepted], key: sender, limit: 1, per: 1m, windows: [{limit: 1, per: 1m}]}\n",
			"c.yaml:2: rules[0].windows: give limit and per, or windows, not both"},
		{"forgive with windows", "rules:\n  - {name: a, on: [accepted], key: sender, windows: [{limit: 1, per: 1m}, {limit: 9, per: 1h}], forgive: 3}\n",
			"c.yaml:2: rules[0].forgive: works with one window"},
		{"escalate factor", "rules:\n  - {name: a, on: [accepted], key: sender, limit: 1, per: 1m, escalate: {factor: 0.5, max: 1w}}\n",
			"c.yaml:2: rules[0].escalate.factor: must be at least 1"},
		{"strip on ip", "rules:\n  - {name: a, on: [accepted], key: client_ip, limit: 1, per: 1m, strip_tag: true}\n",
			"c.yaml:2: rules[0].key: strip_tag, strip_batv and decode_srs apply to sender"},
		{"bad measure", "rules:\n  - {name: a, on: [accepted], key: sender, measure: weight, limit: 1, per: 1m}\n",
			`c.yaml:2: rules[0].measure: "weight" is not a measure`},
		{"bad uid", "ignore: [\"uid:x\"]\n", `c.yaml:1: ignore[0]: "uid:x" is not uid:N`},
		{"bad timezone", "timezone: Mars/Olympus\n", `c.yaml:1: timezone: unknown time zone "Mars/Olympus"`},
		{"journal without postgres", "state: /var/lib/bombwatch/state.db\njournal: /var/lib/bombwatch/journal.db\n",
			`c.yaml:2: journal: applies to a PostgreSQL state only: state "/var/lib/bombwatch/state.db" is SQLite's`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error\n%v\nwant it to contain\n%s", err, tt.want)
			}
		})
	}
}

func TestValidConfig(t *testing.T) {
	c, err := Parse("c.yaml", []byte(`
state: /tmp/s.db
timezone: Europe/Berlin
inputs: [{path: /var/log/mail.log}]
ignore: [127.0.0.0/8, "::1", postmaster@example.org, "@example.net", 192.0.2.1, "<>", "uid:7791"]
rules:
  - {name: nets, on: [accepted], key: client_net, prefix: {ipv4: 26, ipv6: 64}, limit: 5, per: 10m, block: 2d, actions: [log, hook]}
  - {name: uids, on: accepted, key: uid, limit: 5, per: 1h}
  - {name: burst, on: [accepted], key: sender, measure: burst, soft: 1, hard: 3}
  - {name: both, on: [accepted], key: sasl_user, measure: recipients, windows: [{limit: 50, per: 1m}, {limit: 500, per: 1h}], release: below, escalate: {factor: 2, max: 1w}}
  - {name: behind, on: [accepted], key: client_ip, limit: 5, per: 10s, block: 30s, forgive: 10}
  - {name: srs, on: [accepted], key: sender, limit: 5, per: 1m, strip_tag: true, strip_batv: true, decode_srs: true}
actions:
  hook: {type: script, command: [/bin/true, "{key}"], timeout: 5s}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Inputs[0].Format != "auto" || c.Rules[0].Prefix.IPv4 != 26 || len(c.Rules[0].Windows) != 1 || time.Duration(c.Rules[0].Block) != 48*time.Hour {
		t.Errorf("parsed %+v", c)
	}
	if c.Rules[1].On[0] != "accepted" || c.Rules[1].Actions[0] != "log" || time.Duration(c.Rules[1].Block) != time.Hour {
		t.Errorf("defaults not applied: %+v", c.Rules[1])
	}
	if c.Location == nil || c.Location.String() != "Europe/Berlin" {
		t.Errorf("location = %v", c.Location)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{{"90s", 90 * time.Second}, {"1w", 7 * 24 * time.Hour}, {"2d12h", 60 * time.Hour}, {"0", 0}}
	for _, tt := range tests {
		if got, err := ParseDuration(tt.in); err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v", tt.in, got, err)
		}
	}
	for _, bad := range []string{"", "x", "1y", "-1d"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", bad)
		}
	}
}

// TestInterfaceExample: the example config of ../shared/interface.md — every
// option at once — is valid.
func TestInterfaceExample(t *testing.T) {
	path := filepath.Join(filepath.Dir(corpus.Dir(t)), "interface.md")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(data), "```yaml\n")
	if !ok {
		t.Fatal("no yaml block in interface.md")
	}
	block, _, _ = strings.Cut(block, "```")
	c, err := Parse("interface.md", []byte(block))
	if err != nil {
		t.Fatalf("the interface's example config is refused:\n%v", err)
	}
	if len(c.Rules) != 3 || c.Rules[2].Measure != "burst" || c.Actions["fw"].Type != "nft" {
		t.Errorf("parsed %+v", c)
	}
}

func TestListenWarning(t *testing.T) {
	for addr, warn := range map[string]bool{
		"":               false,
		"127.0.0.1:9187": false,
		"[::1]:9187":     false,
		"localhost:9187": false,
		":9187":          true,
		"0.0.0.0:9187":   true,
		"[::]:9187":      true,
		"192.0.2.1:9187": true,
	} {
		w := ListenWarning(addr)
		if (w != "") != warn {
			t.Errorf("ListenWarning(%q) = %q", addr, w)
		}
		if warn && !strings.Contains(w, "without authentication") {
			t.Errorf("ListenWarning(%q) = %q: says nothing of authentication", addr, w)
		}
	}
}

// TestWarnings: a sender rule enforced on clients with a map action is
// valid, and said to write client addresses into a sender map.
func TestWarnings(t *testing.T) {
	c, err := Parse("w.yaml", []byte(`
rules:
  - {name: s, on: [accepted], key: sender, limit: 5, per: 1m, actions: [log, pf]}
  - {name: t, on: [accepted], key: sender, enforce: sender, limit: 5, per: 1m, actions: [log, pf]}
actions:
  pf: {type: postfix_map, path: /etc/postfix/bombwatch}
`))
	if err != nil {
		t.Fatal(err)
	}
	w := Warnings(c)
	if len(w) != 1 || !strings.Contains(w[0], "rules s: enforce: clients writes client addresses") || !strings.Contains(w[0], "check_client_access") {
		t.Errorf("Warnings = %q", w)
	}
}

// TestJournalPath: a PostgreSQL state's journal is the one named, the
// default when none is, none when "off"; a SQLite state has none.
func TestJournalPath(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"state: postgres://db/bombwatch\n", DefaultJournal},
		{"state: postgres://db/bombwatch\njournal: /srv/journal.db\n", "/srv/journal.db"},
		{"state: postgres://db/bombwatch\njournal: \"off\"\n", ""},
		{"state: /var/lib/bombwatch/state.db\n", ""},
		{"state: /var/lib/bombwatch/state.db\njournal: \"off\"\n", ""},
	} {
		c, err := Parse("c.yaml", []byte(tt.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tt.yaml, err)
		}
		if got := c.JournalPath(); got != tt.want {
			t.Errorf("%q: journal %q, want %q", tt.yaml, got, tt.want)
		}
	}
}
