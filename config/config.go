// Package config reads bombwatch's YAML configuration.
//
// Unknown keys are errors, and every error names the file, the line and the
// field ("bombwatch.yaml:12: rules[0].limit: must be a whole number"), so a
// postmaster fixing a config at 3 a.m. never has to guess. Without a file,
// Default is used: limits a small mail server can run with as they are.
package config

import (
	"bytes"
	"cmp"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bombwatch/bombwatch/input"
	"github.com/bombwatch/bombwatch/pipeline"
	"github.com/bombwatch/bombwatch/state"

	"gopkg.in/yaml.v3"
)

// HostName is this host's name: host:, or the machine's.
func (c *Config) HostName() string {
	if c.Host != "" {
		return c.Host
	}
	h, _ := os.Hostname()
	return h
}

// DefaultJournal is the journal of a host sharing a PostgreSQL state when
// the config names none.
const DefaultJournal = "/var/lib/bombwatch/journal.db"

// JournalPath is the local journal of a state several hosts share: the
// file journal: names, DefaultJournal when none is named, "" when the
// state is not shared or journal: is "off".
func (c *Config) JournalPath() string {
	if scheme, _ := state.Scheme(c.State); scheme != "postgres" || c.Journal == "off" {
		return ""
	}
	return cmp.Or(c.Journal, DefaultJournal)
}

// Config is a whole configuration.
type Config struct {
	File string `yaml:"-"`
	// Files are the files merged over the built-in defaults, the main one
	// first (see Load).
	Files []string `yaml:"-"`
	State string   `yaml:"state"`
	// Host names this host's rows in a state several hosts share
	// (PostgreSQL); empty: the machine's name.
	Host string `yaml:"host,omitempty"`
	// Journal is the local SQLite file a host sharing a PostgreSQL state
	// starts on, alone, when the database cannot be reached (see
	// JournalPath).
	Journal  string `yaml:"journal,omitempty"`
	Timezone string `yaml:"timezone,omitempty"`
	Listen   string `yaml:"listen,omitempty"` // Prometheus /metrics and /healthz
	// MergeDelay bounds how long run holds back an input's events for
	// another input that has nothing to read (see input.Merger).
	MergeDelay Duration `yaml:"merge_delay,omitempty"`
	// Retention is how long the per-minute counts reports read are kept.
	Retention Duration `yaml:"retention"`
	// MaxKeys caps the keys the rules hold together (0: the default,
	// 2,000,000): past it the least recently seen are forgotten.
	MaxKeys int            `yaml:"max_keys,omitempty"`
	Log     Log            `yaml:"log"`
	Inputs  []Input        `yaml:"inputs"`
	Ignore  []string       `yaml:"ignore"`
	Rules   []Rule         `yaml:"rules"`
	Actions map[string]Act `yaml:"actions"`

	// Location is Timezone, loaded.
	Location *time.Location `yaml:"-"`
}

// Log is how the daemon logs.
type Log struct {
	Format string `yaml:"format"` // text or json
	Level  string `yaml:"level"`  // debug, info, warn, error
}

// Input is one log to follow: a file, a glob ("/var/log/mail*.log"), "-"
// for standard input, or "journald".
type Input struct {
	Path   string `yaml:"path"`
	Format string `yaml:"format"`
	// Start is where a file seen for the first time is read from: its
	// "end" (default: what is there already was not lived through) or its
	// "beginning". A file that appears later is read from its beginning.
	Start string `yaml:"start,omitempty"`
	// Poll is how often the file is looked at when no change notice came
	// (network filesystems send none): default 1s.
	Poll Duration `yaml:"poll,omitempty"`
	// Units and Identifiers filter a journald input.
	Units       []string `yaml:"units,omitempty"`
	Identifiers []string `yaml:"identifiers,omitempty"`
}

// Rule turns events into keys and decides when a key is over its limit.
type Rule struct {
	Name    string   `yaml:"name"`
	On      []string `yaml:"on"`
	Key     string   `yaml:"key"`
	Prefix  *Prefix  `yaml:"prefix,omitempty"`
	Measure string   `yaml:"measure"`
	// Of is what a distinct measure counts the different values of.
	Of string `yaml:"of,omitempty"`
	// Limit and Per are the rule's window; Windows holds it, or several.
	Limit   int64    `yaml:"limit,omitempty"`
	Per     Duration `yaml:"per,omitempty"`
	Windows []Window `yaml:"windows,omitempty"`
	// Soft, Hard and Expire are the burst measure's.
	Soft   float64  `yaml:"soft,omitempty"`
	Hard   float64  `yaml:"hard,omitempty"`
	Expire Duration `yaml:"expire,omitempty"`
	Block  Duration `yaml:"block"`
	// Release "below" lifts a block as soon as the measure is back at or
	// under the limit.
	Release  string    `yaml:"release,omitempty"`
	Forgive  int64     `yaml:"forgive,omitempty"`
	Escalate *Escalate `yaml:"escalate,omitempty"`
	// Adapt raises a key's limit to what the key itself reached before.
	Adapt *Adapt `yaml:"adapt,omitempty"`
	// Sender key options.
	StripTag  bool `yaml:"strip_tag,omitempty"`
	StripBATV bool `yaml:"strip_batv,omitempty"`
	DecodeSRS bool `yaml:"decode_srs,omitempty"`
	// Enforce says on what a block's firewall and map actions act: for
	// sender and sender_domain keys "clients" (the default: the client
	// addresses that sent the key's mail) or "sender" (the sender, for
	// everyone); for client_net "network".
	Enforce string   `yaml:"enforce,omitempty"`
	Actions []string `yaml:"actions"`
	Line    int      `yaml:"-"`
}

// Window is one limit over one sliding window.
type Window struct {
	Limit int64    `yaml:"limit"`
	Per   Duration `yaml:"per"`
}

// Escalate lengthens the blocks of repeat offenders: each block of a key
// lasts Factor times its previous one, at most Max; a key with no block for
// Max starts again from the rule's block.
type Escalate struct {
	Factor float64  `yaml:"factor"`
	Max    Duration `yaml:"max"`
}

// Adapt raises a key's effective limit to Factor times the highest measure
// the key itself reached over History (its own normal), at most Max times
// the limit, never under it.
type Adapt struct {
	History Duration `yaml:"history"`
	Factor  float64  `yaml:"factor"`
	Max     float64  `yaml:"max"`
}

// Prefix is the network size of client_net keys.
type Prefix struct {
	IPv4 int `yaml:"ipv4"`
	IPv6 int `yaml:"ipv6"`
}

// Act is a named action.
type Act struct {
	Type    string `yaml:"type"`
	DryRun  bool   `yaml:"dry_run,omitempty"`
	Retries int    `yaml:"retries,omitempty"` // -1: none; default 2
	// script
	Command        []string `yaml:"command,omitempty"`
	UnblockCommand []string `yaml:"unblock_command,omitempty"`
	Timeout        Duration `yaml:"timeout,omitempty"`
	Concurrency    int      `yaml:"concurrency,omitempty"`
	// nft, iptables
	Table   string `yaml:"table,omitempty"`
	Set     string `yaml:"set,omitempty"` // iptables: the ipsets are SET4 and SET6
	Ports   []int  `yaml:"ports,omitempty"`
	Verdict string `yaml:"verdict,omitempty"`
	// postfix_map, sendmail_access, qmail_badmailfrom
	Path      string `yaml:"path,omitempty"`
	MapType   string `yaml:"map_type,omitempty"`
	Reply     string `yaml:"reply,omitempty"`
	MTAConfig string `yaml:"mta_config,omitempty"` // postmap -c DIR, makemap -C FILE
	// mail
	To       []string `yaml:"to,omitempty"`
	Sendmail string   `yaml:"sendmail,omitempty"`
	// SMTP, host:port, sends the mail action's notices over SMTP instead
	// of through the sendmail program (whose setgid postdrop a sandbox
	// with NoNewPrivileges stops).
	SMTP    string   `yaml:"smtp,omitempty"`
	Period  Duration `yaml:"period,omitempty"`
	PerHour int      `yaml:"per_hour,omitempty"`
}

// ActionKeys says which rule keys each action type can enforce.
var ActionKeys = map[string][]string{
	"nft":               {"client_ip", "client_net"},
	"iptables":          {"client_ip", "client_net"},
	"postfix_map":       {"sender", "sender_domain", "client_ip", "client_net", "sasl_user"},
	"sendmail_access":   {"sender", "sender_domain", "client_ip", "client_net"},
	"qmail_badmailfrom": {"sender", "sender_domain"},
}

// Duration is a time.Duration written as "90s", "10m", "1h", "2d" or "1w".
type Duration time.Duration

func (d Duration) MarshalYAML() (any, error) { return FormatDuration(time.Duration(d)), nil }

// FormatDuration writes d as a user would: "10m", "1m30s", "1h", "2d",
// "1w", "2d12h"; ParseDuration reads it back.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	if d < 0 {
		b.WriteByte('-')
		d = -d
	}
	const day, week = 24 * time.Hour, 7 * 24 * time.Hour
	switch {
	case d%week == 0:
		fmt.Fprintf(&b, "%dw", d/week)
		return b.String()
	case d >= day:
		fmt.Fprintf(&b, "%dd", d/day)
		d %= day
	}
	if d%time.Second != 0 {
		b.WriteString(d.String()) // under a second: Go's own form
		return b.String()
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.unit; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d %= u.unit
		}
	}
	return b.String()
}

// ParseDuration reads Go durations, and whole days ("d") and weeks ("w") as
// a leading term: "1w", "2d12h".
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty duration")
	}
	var extra time.Duration
	for _, unit := range []struct {
		suffix string
		d      time.Duration
	}{{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		if i := strings.Index(s, unit.suffix); i > 0 {
			n, err := strconv.Atoi(s[:i])
			if err != nil || n < 0 {
				return 0, fmt.Errorf("invalid duration %q", s)
			}
			extra += time.Duration(n) * unit.d
			s = s[i+1:]
		}
	}
	if s == "" {
		return extra, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use 30s, 10m, 1h, 2d, 1w)", s)
	}
	return extra + d, nil
}

// Event kinds, rule keys and measures that exist.
var (
	Measures = []string{"count", "bytes", "recipients", "distinct", "burst"}
	// DistinctOf are what a distinct measure can count.
	DistinctOf = []string{"sender", "sender_domain", "client_ip", "client_net", "sasl_user"}
	Kinds      = []string{"accepted", "rejected", "auth_failed", "lost_connection", "connect"}
	KeyTypes   = []string{"sender", "sender_domain", "client_ip", "client_net", "sasl_user", "uid"}
	Formats    = []string{"auto", "postfix", "sendmail", "qmail", "journald"}
)

// Error is one problem in a config file.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
}

// Errors is every problem found in a file, in order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

//go:embed default.yaml
var defaultYAML []byte

// Default returns the built-in configuration.
func Default() *Config {
	c, err := Parse("(built-in default)", defaultYAML)
	if err != nil {
		panic("config: the built-in default is invalid: " + err.Error())
	}
	return c
}

// DefaultYAML is the text of the built-in configuration.
func DefaultYAML() []byte { return defaultYAML }

// Load reads a config file the way fail2ban reads jail.local: merged over
// the built-in defaults, with the drop-ins of the conf.d directory beside
// it (conf.d/*.yaml, in name order) merged over it. A later file's
// top-level key replaces an earlier one's, but for rules and actions,
// which are merged by name: a rule or action of the same name replaces the
// earlier one, a new one is added, and `rules: []` removes every rule
// before it. The result is checked as one config; an error names the
// file and line it came from.
func Load(path string) (*Config, error) {
	files := []string{path}
	dropins, err := filepath.Glob(filepath.Join(filepath.Dir(path), "conf.d", "*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	slices.Sort(dropins)
	files = append(files, dropins...)
	layers := []layer{{"(built-in default)", defaultYAML}}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		layers = append(layers, layer{f, data})
	}
	c, err := parseLayers(layers, path)
	if err != nil {
		return nil, err
	}
	c.Files = files
	return c, nil
}

// layer is one file of a config.
type layer struct {
	file string
	data []byte
}

// lineBits is where a layer's index goes in a merged node's line: nodes of
// several files are decoded as one document, and each error is told back
// its file and line.
const lineBits = 20

// parseLayers merges the layers' YAML and decodes it as one config named
// main.
func parseLayers(layers []layer, main string) (*Config, error) {
	var merged *yaml.Node
	ruleIndex := map[*yaml.Node]int{}
	for i, l := range layers {
		var doc yaml.Node
		if err := yaml.Unmarshal(l.data, &doc); err != nil {
			return nil, syntaxError(l.file, err)
		}
		if len(doc.Content) == 0 {
			continue // an empty file
		}
		root := doc.Content[0]
		if root.Kind != yaml.MappingNode {
			return nil, Errors{{File: l.file, Line: root.Line, Field: "(top)", Msg: "must be a mapping of keys to values"}}
		}
		shiftLines(root, i<<lineBits)
		if j := mappingIndex(root, "rules"); j >= 0 {
			for k, r := range root.Content[j+1].Content {
				ruleIndex[r] = k
			}
		}
		merged = mergeConfig(merged, root)
	}
	c, err := decode(main, merged)
	if errs, ok := err.(Errors); ok {
		// Errors say rules[N] as N is in the rule's own file.
		var own []int
		if merged != nil {
			if j := mappingIndex(merged, "rules"); j >= 0 {
				for _, r := range merged.Content[j+1].Content {
					own = append(own, ruleIndex[r])
				}
			}
		}
		for _, e := range errs {
			var m int
			if rest, ok := strings.CutPrefix(e.Field, "rules["); ok {
				if _, err := fmt.Sscanf(rest, "%d]", &m); err == nil && m < len(own) {
					e.Field = fmt.Sprintf("rules[%d]%s", own[m], rest[strings.IndexByte(rest, ']')+1:])
				}
			}
			if i := e.Line >> lineBits; e.Line > 0 && i < len(layers) {
				e.File, e.Line = layers[i].file, e.Line&(1<<lineBits-1)
			} else {
				e.File = main
			}
		}
		slices.SortStableFunc(errs, func(a, b *Error) int { return strings.Compare(a.File, b.File)*1<<30 + a.Line - b.Line })
	}
	if c != nil {
		for i := range c.Rules {
			c.Rules[i].Line &= 1<<lineBits - 1
		}
	}
	return c, err
}

// shiftLines adds add to the line of every node under n.
func shiftLines(n *yaml.Node, add int) {
	n.Line += add
	for _, c := range n.Content {
		shiftLines(c, add)
	}
}

// mergeConfig merges the top-level mapping over into base (nil: none).
func mergeConfig(base, over *yaml.Node) *yaml.Node {
	if base == nil {
		return over
	}
	for i := 0; i+1 < len(over.Content); i += 2 {
		k, v := over.Content[i], over.Content[i+1]
		j := mappingIndex(base, k.Value)
		switch {
		case j < 0:
			base.Content = append(base.Content, k, v)
		case k.Value == "rules" && v.Kind == yaml.SequenceNode && base.Content[j+1].Kind == yaml.SequenceNode && len(v.Content) > 0:
			base.Content[j+1] = mergeByName(base.Content[j+1], v)
		case k.Value == "actions" && v.Kind == yaml.MappingNode && base.Content[j+1].Kind == yaml.MappingNode:
			for a := 0; a+1 < len(v.Content); a += 2 {
				if b := mappingIndex(base.Content[j+1], v.Content[a].Value); b >= 0 {
					base.Content[j+1].Content[b+1] = v.Content[a+1]
				} else {
					base.Content[j+1].Content = append(base.Content[j+1].Content, v.Content[a], v.Content[a+1])
				}
			}
		default:
			base.Content[j], base.Content[j+1] = k, v
		}
	}
	return base
}

// mergeByName merges a list of rules over another: one of the same name
// takes the earlier one's place, a new one goes at the end.
func mergeByName(base, over *yaml.Node) *yaml.Node {
	out := &yaml.Node{Kind: yaml.SequenceNode, Tag: base.Tag, Line: over.Line, Column: over.Column, Content: slices.Clone(base.Content)}
	for _, r := range over.Content {
		name := ""
		if r.Kind == yaml.MappingNode {
			if i := mappingIndex(r, "name"); i >= 0 {
				name = r.Content[i+1].Value
			}
		}
		replaced := false
		for i, b := range out.Content {
			if name == "" || b.Kind != yaml.MappingNode {
				continue
			}
			if j := mappingIndex(b, "name"); j >= 0 && b.Content[j+1].Value == name {
				out.Content[i], replaced = r, true
				break
			}
		}
		if !replaced {
			out.Content = append(out.Content, r)
		}
	}
	return out
}

// mappingIndex is the index of key in a mapping's content, or -1.
func mappingIndex(m *yaml.Node, key string) int {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return i
		}
	}
	return -1
}

// syntaxError is a file's YAML that does not parse, as an Errors.
func syntaxError(file string, err error) error {
	line := 0
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) {
		msg = strings.Join(te.Errors, "; ")
	}
	// yaml.v3 says "yaml: line N: problem".
	if rest, ok := strings.CutPrefix(msg, "yaml: line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			line, _ = strconv.Atoi(rest[:i])
			msg = strings.TrimSpace(rest[i+1:])
		}
	}
	return Errors{{File: file, Line: line, Field: "(syntax)", Msg: msg}}
}

// Parse reads and checks one config document, alone: not merged over the
// defaults (see Load). The error, if any, is an Errors.
func Parse(file string, data []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, syntaxError(file, err)
	}
	var root *yaml.Node
	if len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	return decode(file, root)
}

// decode decodes and checks a config's top-level node (nil: empty).
func decode(file string, root *yaml.Node) (*Config, error) {
	d := &decoder{file: file, lines: map[string]int{}}
	c := &Config{File: file, Actions: map[string]Act{}, MergeDelay: Duration(time.Second)}
	if root != nil {
		d.config(root, c)
	}
	d.check(c)
	if len(d.errs) > 0 {
		slices.SortStableFunc(d.errs, func(a, b *Error) int { return a.Line - b.Line })
		return nil, d.errs
	}
	return c, nil
}

type decoder struct {
	file  string
	errs  Errors
	root  *yaml.Node
	lines map[string]int // the line of each field seen, by path
}

// at is a node for an error about field: its own line when it was given,
// else the line of what holds it.
func (d *decoder) at(field string, fallback int) *yaml.Node {
	if l, ok := d.lines[field]; ok {
		return &yaml.Node{Line: l}
	}
	return &yaml.Node{Line: fallback}
}

func (d *decoder) errorf(n *yaml.Node, field, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// fields walks a mapping, calling set for each known key and reporting
// unknown ones.
func (d *decoder) fields(n *yaml.Node, path string, set map[string]func(field string, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping of keys to values")
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		field := k.Value
		if path != "" {
			field = path + "." + k.Value
		}
		d.lines[field] = k.Line
		f, ok := set[k.Value]
		switch {
		case !ok:
			d.errorf(k, field, "unknown key")
		case seen[k.Value]:
			d.errorf(k, field, "given twice")
		default:
			seen[k.Value] = true
			f(field, v)
		}
	}
}

func (d *decoder) str(n *yaml.Node, field string, dst *string) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errorf(n, field, "must be a string")
		return
	}
	*dst = n.Value
}

func (d *decoder) strs(n *yaml.Node, field string, dst *[]string) {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		*dst = []string{n.Value} // a single value where a list is expected
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, field, "must be a list")
		return
	}
	for i, e := range n.Content {
		var s string
		d.str(e, fmt.Sprintf("%s[%d]", field, i), &s)
		*dst = append(*dst, s)
	}
}

func (d *decoder) integer(n *yaml.Node, field string, dst *int) {
	v, err := strconv.Atoi(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		d.errorf(n, field, "must be a whole number, not %q", n.Value)
		return
	}
	*dst = v
}

func (d *decoder) int64(n *yaml.Node, field string, dst *int64) {
	v, err := strconv.ParseInt(n.Value, 10, 64)
	if n.Kind != yaml.ScalarNode || err != nil {
		d.errorf(n, field, "must be a whole number, not %q", n.Value)
		return
	}
	*dst = v
}

func (d *decoder) float(n *yaml.Node, field string, dst *float64) {
	v, err := strconv.ParseFloat(n.Value, 64)
	if n.Kind != yaml.ScalarNode || err != nil {
		d.errorf(n, field, "must be a number, not %q", n.Value)
		return
	}
	*dst = v
}

func (d *decoder) duration(n *yaml.Node, field string, dst *Duration) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, field, "must be a duration such as 1m, 1h, 2d")
		return
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		d.errorf(n, field, "%v", err)
		return
	}
	*dst = Duration(v)
}

func (d *decoder) boolean(n *yaml.Node, field string, dst *bool) {
	v, err := strconv.ParseBool(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		d.errorf(n, field, "must be true or false")
		return
	}
	*dst = v
}

func (d *decoder) config(n *yaml.Node, c *Config) {
	d.root = n
	d.fields(n, "", map[string]func(string, *yaml.Node){
		"state":     func(f string, v *yaml.Node) { d.str(v, f, &c.State) },
		"host":      func(f string, v *yaml.Node) { d.str(v, f, &c.Host) },
		"journal":   func(f string, v *yaml.Node) { d.str(v, f, &c.Journal) },
		"listen":    func(f string, v *yaml.Node) { d.str(v, f, &c.Listen) },
		"retention": func(f string, v *yaml.Node) { d.duration(v, f, &c.Retention) },
		"max_keys": func(f string, v *yaml.Node) {
			d.integer(v, f, &c.MaxKeys)
			if c.MaxKeys < 0 {
				d.errorf(v, f, "must not be negative (0: the default, %d)", pipeline.DefaultMaxKeys)
			}
		},
		"merge_delay": func(f string, v *yaml.Node) {
			d.duration(v, f, &c.MergeDelay)
			if c.MergeDelay < 0 || time.Duration(c.MergeDelay) > time.Minute {
				d.errorf(v, f, "must be between 0s and 1m")
			}
		},
		"log": func(f string, v *yaml.Node) {
			d.fields(v, f, map[string]func(string, *yaml.Node){
				"format": func(f string, v *yaml.Node) { d.str(v, f, &c.Log.Format) },
				"level":  func(f string, v *yaml.Node) { d.str(v, f, &c.Log.Level) },
			})
		},
		"timezone": func(f string, v *yaml.Node) { d.str(v, f, &c.Timezone) },
		"ignore":   func(f string, v *yaml.Node) { d.strs(v, f, &c.Ignore) },
		"inputs": func(f string, v *yaml.Node) {
			d.list(v, f, func(f string, e *yaml.Node) {
				in := Input{Format: "auto", Start: "end", Poll: Duration(time.Second)}
				d.fields(e, f, map[string]func(string, *yaml.Node){
					"path":        func(f string, v *yaml.Node) { d.str(v, f, &in.Path) },
					"format":      func(f string, v *yaml.Node) { d.str(v, f, &in.Format) },
					"start":       func(f string, v *yaml.Node) { d.str(v, f, &in.Start) },
					"poll":        func(f string, v *yaml.Node) { d.duration(v, f, &in.Poll) },
					"units":       func(f string, v *yaml.Node) { d.strs(v, f, &in.Units) },
					"identifiers": func(f string, v *yaml.Node) { d.strs(v, f, &in.Identifiers) },
				})
				if in.Start != "end" && in.Start != "beginning" {
					d.errorf(e, f+".start", "%q is not end or beginning", in.Start)
				}
				if in.Poll <= 0 {
					d.errorf(e, f+".poll", "must be positive")
				}
				if (len(in.Units) > 0 || len(in.Identifiers) > 0) && in.Path != "journald" {
					d.errorf(e, f+".units", "units and identifiers apply to the journald input")
				}
				if in.Path == "" {
					d.errorf(e, f+".path", "is required")
				}
				if !contains(Formats, in.Format) {
					d.errorf(e, f+".format", "%q is not one of %s", in.Format, strings.Join(Formats, ", "))
				}
				c.Inputs = append(c.Inputs, in)
			})
		},
		"rules": func(f string, v *yaml.Node) {
			d.list(v, f, func(f string, e *yaml.Node) { c.Rules = append(c.Rules, d.rule(e, f)) })
		},
		"actions": func(f string, v *yaml.Node) {
			if v.Kind != yaml.MappingNode {
				d.errorf(v, f, "must be a mapping of action names to actions")
				return
			}
			for i := 0; i+1 < len(v.Content); i += 2 {
				name := v.Content[i].Value
				if _, dup := c.Actions[name]; dup {
					d.errorf(v.Content[i], f+"."+name, "given twice")
				}
				c.Actions[name] = d.action(v.Content[i+1], f+"."+name)
			}
		},
	})
}

func (d *decoder) list(n *yaml.Node, field string, each func(string, *yaml.Node)) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, field, "must be a list")
		return
	}
	for i, e := range n.Content {
		each(fmt.Sprintf("%s[%d]", field, i), e)
	}
}

func (d *decoder) rule(n *yaml.Node, path string) Rule {
	r := Rule{Measure: "count", Line: n.Line, Block: Duration(time.Hour)}
	set := map[string]func(string, *yaml.Node){
		"name":       func(f string, v *yaml.Node) { d.str(v, f, &r.Name) },
		"on":         func(f string, v *yaml.Node) { d.strs(v, f, &r.On) },
		"key":        func(f string, v *yaml.Node) { d.str(v, f, &r.Key) },
		"measure":    func(f string, v *yaml.Node) { d.str(v, f, &r.Measure) },
		"of":         func(f string, v *yaml.Node) { d.str(v, f, &r.Of) },
		"limit":      func(f string, v *yaml.Node) { d.int64(v, f, &r.Limit) },
		"per":        func(f string, v *yaml.Node) { d.duration(v, f, &r.Per) },
		"block":      func(f string, v *yaml.Node) { d.duration(v, f, &r.Block) },
		"soft":       func(f string, v *yaml.Node) { d.float(v, f, &r.Soft) },
		"hard":       func(f string, v *yaml.Node) { d.float(v, f, &r.Hard) },
		"expire":     func(f string, v *yaml.Node) { d.duration(v, f, &r.Expire) },
		"release":    func(f string, v *yaml.Node) { d.str(v, f, &r.Release) },
		"forgive":    func(f string, v *yaml.Node) { d.int64(v, f, &r.Forgive) },
		"strip_tag":  func(f string, v *yaml.Node) { d.boolean(v, f, &r.StripTag) },
		"strip_batv": func(f string, v *yaml.Node) { d.boolean(v, f, &r.StripBATV) },
		"decode_srs": func(f string, v *yaml.Node) { d.boolean(v, f, &r.DecodeSRS) },
		"enforce":    func(f string, v *yaml.Node) { d.str(v, f, &r.Enforce) },
		"windows": func(f string, v *yaml.Node) {
			d.list(v, f, func(f string, e *yaml.Node) {
				var w Window
				d.fields(e, f, map[string]func(string, *yaml.Node){
					"limit": func(f string, v *yaml.Node) { d.int64(v, f, &w.Limit) },
					"per":   func(f string, v *yaml.Node) { d.duration(v, f, &w.Per) },
				})
				if w.Limit < 1 {
					d.errorf(e, f+".limit", "must be at least 1")
				}
				if w.Per <= 0 {
					d.errorf(e, f+".per", "is required: the window, such as 1m")
				}
				r.Windows = append(r.Windows, w)
			})
		},
		"escalate": func(f string, v *yaml.Node) {
			e := Escalate{Factor: 2}
			d.fields(v, f, map[string]func(string, *yaml.Node){
				"factor": func(f string, v *yaml.Node) { d.float(v, f, &e.Factor) },
				"max":    func(f string, v *yaml.Node) { d.duration(v, f, &e.Max) },
			})
			if e.Factor < 1 {
				d.errorf(v, f+".factor", "must be at least 1")
			}
			if e.Max <= 0 {
				d.errorf(v, f+".max", "is required: the longest block, such as 1w")
			}
			r.Escalate = &e
		},
		"adapt": func(f string, v *yaml.Node) {
			a := Adapt{History: Duration(7 * 24 * time.Hour), Factor: 3, Max: 10}
			d.fields(v, f, map[string]func(string, *yaml.Node){
				"history": func(f string, v *yaml.Node) { d.duration(v, f, &a.History) },
				"factor":  func(f string, v *yaml.Node) { d.float(v, f, &a.Factor) },
				"max":     func(f string, v *yaml.Node) { d.float(v, f, &a.Max) },
			})
			if a.Factor < 1 {
				d.errorf(v, f+".factor", "must be at least 1")
			}
			if a.Max < 1 {
				d.errorf(v, f+".max", "must be at least 1: the effective limit is never under the limit")
			}
			r.Adapt = &a
		},
		"actions": func(f string, v *yaml.Node) { d.strs(v, f, &r.Actions) },
		"prefix": func(f string, v *yaml.Node) {
			p := Prefix{IPv4: 24, IPv6: 48}
			d.fields(v, f, map[string]func(string, *yaml.Node){
				"ipv4": func(f string, v *yaml.Node) { d.integer(v, f, &p.IPv4) },
				"ipv6": func(f string, v *yaml.Node) { d.integer(v, f, &p.IPv6) },
			})
			if p.IPv4 < 1 || p.IPv4 > 32 {
				d.errorf(v, f+".ipv4", "must be 1 to 32")
			}
			if p.IPv6 < 1 || p.IPv6 > 128 {
				d.errorf(v, f+".ipv6", "must be 1 to 128")
			}
			r.Prefix = &p
		},
	}
	d.fields(n, path, set)
	return r
}

// The keys each action type takes, besides the common ones.
var (
	commonActionKeys = []string{"type", "dry_run", "retries"}
	actionKeys       = map[string][]string{
		"log":               {},
		"script":            {"command", "unblock_command", "timeout", "concurrency"},
		"nft":               {"table", "ports", "verdict"},
		"iptables":          {"set", "ports", "verdict"},
		"postfix_map":       {"path", "map_type", "reply", "mta_config"},
		"sendmail_access":   {"path", "map_type", "reply", "mta_config"},
		"qmail_badmailfrom": {"path"},
		"mail":              {"to", "sendmail", "smtp", "period", "per_hour"},
	}
	allActionKeys = []string{"command", "unblock_command", "timeout", "concurrency", "table", "set", "ports", "verdict",
		"path", "map_type", "reply", "mta_config", "to", "sendmail", "smtp", "period", "per_hour"}
)

func (d *decoder) action(n *yaml.Node, path string) Act {
	var a Act
	var ports []string
	d.fields(n, path, map[string]func(string, *yaml.Node){
		"type":            func(f string, v *yaml.Node) { d.str(v, f, &a.Type) },
		"dry_run":         func(f string, v *yaml.Node) { d.boolean(v, f, &a.DryRun) },
		"retries":         func(f string, v *yaml.Node) { d.integer(v, f, &a.Retries) },
		"command":         func(f string, v *yaml.Node) { d.strs(v, f, &a.Command) },
		"unblock_command": func(f string, v *yaml.Node) { d.strs(v, f, &a.UnblockCommand) },
		"timeout":         func(f string, v *yaml.Node) { d.duration(v, f, &a.Timeout) },
		"concurrency":     func(f string, v *yaml.Node) { d.integer(v, f, &a.Concurrency) },
		"table":           func(f string, v *yaml.Node) { d.str(v, f, &a.Table) },
		"set":             func(f string, v *yaml.Node) { d.str(v, f, &a.Set) },
		"ports":           func(f string, v *yaml.Node) { d.strs(v, f, &ports) },
		"verdict":         func(f string, v *yaml.Node) { d.str(v, f, &a.Verdict) },
		"path":            func(f string, v *yaml.Node) { d.str(v, f, &a.Path) },
		"map_type":        func(f string, v *yaml.Node) { d.str(v, f, &a.MapType) },
		"reply":           func(f string, v *yaml.Node) { d.str(v, f, &a.Reply) },
		"mta_config":      func(f string, v *yaml.Node) { d.str(v, f, &a.MTAConfig) },
		"to":              func(f string, v *yaml.Node) { d.strs(v, f, &a.To) },
		"sendmail":        func(f string, v *yaml.Node) { d.str(v, f, &a.Sendmail) },
		"smtp": func(f string, v *yaml.Node) {
			d.str(v, f, &a.SMTP)
			if _, port, err := net.SplitHostPort(a.SMTP); err != nil || port == "" {
				d.errorf(v, f, "%q is not host:port (127.0.0.1:25)", a.SMTP)
			}
		},
		"period":   func(f string, v *yaml.Node) { d.duration(v, f, &a.Period) },
		"per_hour": func(f string, v *yaml.Node) { d.integer(v, f, &a.PerHour) },
	})
	for _, p := range ports {
		port, err := strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			d.errorf(d.at(path+".ports", n.Line), path+".ports", "%q is not a port", p)
			continue
		}
		a.Ports = append(a.Ports, port)
	}
	bad := func(field, format string, args ...any) {
		d.errorf(d.at(path+"."+field, n.Line), path+"."+field, format, args...)
	}
	if own, ok := actionKeys[a.Type]; ok {
		// Each type takes its own keys: a key of another type is a
		// mistake (ports on a script), never silently ignored.
		for _, k := range allActionKeys {
			if _, given := d.lines[path+"."+k]; given && !slices.Contains(own, k) && !slices.Contains(commonActionKeys, k) {
				bad(k, "does not apply to a %s action (it takes %s)", a.Type, strings.Join(append(slices.Clone(commonActionKeys), own...), ", "))
			}
		}
	}
	switch a.Type {
	case "log":
	case "script":
		if len(a.Command) == 0 {
			bad("command", "is required for a script: a list, program first")
		}
		if a.Timeout == 0 {
			a.Timeout = Duration(30 * time.Second)
		}
	case "nft":
		if a.Table == "" {
			a.Table = "inet bombwatch"
		}
		if !nftTable.MatchString(a.Table) {
			bad("table", "%q is not \"inet|ip|ip6 NAME\"", a.Table)
		}
		firewallDefaults(&a, bad)
	case "postfix_map", "sendmail_access", "qmail_badmailfrom":
		if a.Path == "" {
			a.Path = map[string]string{"postfix_map": "", "sendmail_access": "/etc/mail/access",
				"qmail_badmailfrom": "/var/qmail/control/badmailfrom"}[a.Type]
		}
		if a.Path == "" {
			bad("path", "is required: the table main.cf names, such as /etc/postfix/bombwatch_access")
		}
		if a.Type == "postfix_map" && a.MapType == "" {
			a.MapType = "hash"
		}
		if a.Type == "postfix_map" && !contains([]string{"hash", "lmdb", "btree", "cdb", "texthash", "cidr"}, a.MapType) {
			bad("map_type", "%q is not hash, lmdb, btree, cdb, texthash or cidr", a.MapType)
		}
		if strings.ContainsAny(a.Reply, "\n\r") {
			bad("reply", "must be one line")
		}
	case "mail":
		if len(a.To) == 0 {
			a.To = []string{"postmaster"}
		}
		for _, to := range a.To {
			if strings.ContainsAny(to, " \t\r\n,;") || strings.HasPrefix(to, "-") {
				bad("to", "%q is not a mail address", to)
			}
		}
		if a.Period == 0 {
			a.Period = Duration(time.Hour)
		}
		if a.PerHour == 0 {
			a.PerHour = 20
		}
	case "":
		bad("type", "is required (log, script, nft, iptables, postfix_map, sendmail_access, qmail_badmailfrom, mail)")
	case "iptables":
		if a.Set == "" {
			a.Set = "bombwatch"
		}
		if !setPrefix.MatchString(a.Set) {
			bad("set", "%q is not a set name (letters, digits, _ and -, at most 26)", a.Set)
		}
		firewallDefaults(&a, bad)
	default:
		bad("type", "%q is not an action type (log, script, nft, iptables, postfix_map, sendmail_access, qmail_badmailfrom, mail)", a.Type)
	}
	return a
}

// firewallDefaults fills and checks what nft and iptables share: the mail
// ports, and drop or reject.
func firewallDefaults(a *Act, bad func(field, format string, args ...any)) {
	if len(a.Ports) == 0 {
		a.Ports = []int{25, 465, 587}
	}
	if a.Verdict == "" {
		a.Verdict = "drop"
	}
	if a.Verdict != "drop" && a.Verdict != "reject" {
		bad("verdict", "%q is not drop or reject", a.Verdict)
	}
}

var setPrefix = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,25}$`)

var nftTable = regexp.MustCompile(`^(inet|ip|ip6) [a-z][a-z0-9_]{0,31}$`)

// check validates what single fields cannot: references and names.
func (d *decoder) check(c *Config) {
	if c.Retention == 0 {
		c.Retention = Duration(30 * 24 * time.Hour)
	}
	if c.Retention < 0 {
		d.errorf(d.node("retention"), "retention", "must not be negative")
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		d.errorf(d.node("log"), "log.format", "%q is not text or json", c.Log.Format)
	}
	if !contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		d.errorf(d.node("log"), "log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	if c.Journal != "" && c.Journal != "off" {
		if scheme, _ := state.Scheme(c.State); scheme != "postgres" {
			d.errorf(d.node("journal"), "journal", "applies to a PostgreSQL state only: state %q is SQLite's, and a journal itself", c.State)
		}
	}
	if c.Timezone != "" {
		loc, err := time.LoadLocation(c.Timezone)
		if err != nil {
			d.errorf(d.node("timezone"), "timezone", "unknown time zone %q", c.Timezone)
		}
		c.Location = loc
	}
	for i, ig := range c.Ignore {
		if err := CheckIgnore(ig); err != nil {
			d.errorf(d.node("ignore"), fmt.Sprintf("ignore[%d]", i), "%v", err)
		}
	}
	names := map[string]bool{}
	for i, r := range c.Rules {
		f := fmt.Sprintf("rules[%d]", i)
		at := func(field string) *yaml.Node { return d.at(f+"."+field, r.Line) }
		switch {
		case r.Name == "":
			d.errorf(at("name"), f+".name", "is required")
		case names[r.Name]:
			d.errorf(at("name"), f+".name", "%q is used by another rule", r.Name)
		case strings.ContainsAny(r.Name, " \t\n"):
			d.errorf(at("name"), f+".name", "must not contain spaces")
		}
		names[r.Name] = true
		if len(r.On) == 0 {
			d.errorf(at("on"), f+".on", "is required: the event kinds counted (%s)", strings.Join(Kinds, ", "))
		}
		for _, k := range r.On {
			if !contains(Kinds, k) {
				d.errorf(at("on"), f+".on", "%q is not an event kind (%s)", k, strings.Join(Kinds, ", "))
			}
		}
		if !contains(KeyTypes, r.Key) {
			d.errorf(at("key"), f+".key", "%q is not a key (%s)", r.Key, strings.Join(KeyTypes, ", "))
		}
		if r.Prefix != nil && r.Key != "client_net" && r.Of != "client_net" {
			d.errorf(at("prefix"), f+".prefix", "only applies to key client_net (or of: client_net)")
		}
		if (r.Key == "client_net" || r.Of == "client_net") && r.Prefix == nil {
			c.Rules[i].Prefix = &Prefix{IPv4: 24, IPv6: 48}
		}
		d.checkMeasure(c, i, f, at)
		if r.Block < 0 {
			d.errorf(at("block"), f+".block", "must not be negative (0: no end)")
		}
		if r.Escalate != nil && r.Block > 0 && r.Escalate.Max < r.Block {
			d.errorf(at("escalate"), f+".escalate.max", "is shorter than block")
		}
		if (r.StripTag || r.StripBATV || r.DecodeSRS) && r.Key != "sender" && r.Key != "sender_domain" {
			d.errorf(at("key"), f+".key", "strip_tag, strip_batv and decode_srs apply to sender and sender_domain keys")
		}
		if len(r.Actions) == 0 {
			c.Rules[i].Actions = []string{"log"}
		}
		enforced := d.checkEnforce(&c.Rules[i], f, at)
		for _, a := range r.Actions {
			act, ok := c.Actions[a]
			if !ok && a != "log" {
				d.errorf(at("actions"), f+".actions", "%q is not defined under actions", a)
			}
			if keys, limited := ActionKeys[act.Type]; ok && limited && !contains(keys, enforced) {
				how := ""
				if enforced != r.Key {
					how = fmt.Sprintf(" (enforce: %s makes it a %s key)", c.Rules[i].Enforce, enforced)
				}
				d.errorf(at("actions"), f+".actions", "%q (%s) cannot enforce a %s key%s (%s)", a, act.Type, enforced, how, strings.Join(keys, ", "))
			}
		}
	}
}

// checkEnforce validates a rule's enforce, fills in its default, and
// returns the key type its firewall and map actions receive.
//
// A sender over its limit is, for unauthenticated mail, whatever the
// clients wrote in MAIL FROM: blocking it in a sender map would reject the
// real owner of the address for everyone. So by default a sender block is
// enforced on the client addresses that sent the mail ("clients"), and
// only a rule that says "enforce: sender" puts the sender in a map.
func (d *decoder) checkEnforce(r *Rule, f string, at func(string) *yaml.Node) string {
	switch r.Key {
	case "sender", "sender_domain":
		switch r.Enforce {
		case "":
			r.Enforce = "clients"
			return "client_ip"
		case "clients":
			return "client_ip"
		case "sender":
			return r.Key
		}
		d.errorf(at("enforce"), f+".enforce", "%q is not clients or sender", r.Enforce)
	case "client_net":
		switch r.Enforce {
		case "":
			r.Enforce = "members"
			return "client_ip"
		case "members":
			return "client_ip"
		case "network":
			return r.Key
		}
		d.errorf(at("enforce"), f+".enforce", "%q is not members or network", r.Enforce)
	default:
		if r.Enforce != "" {
			d.errorf(at("enforce"), f+".enforce", "applies to sender, sender_domain (clients | sender) and client_net (members | network) keys")
		}
	}
	return r.Key
}

// checkMeasure validates a rule's measure and what goes with it, and fills
// in Windows and the burst's expiry.
func (d *decoder) checkMeasure(c *Config, i int, f string, at func(string) *yaml.Node) {
	r := &c.Rules[i]
	given := func(field string) bool { _, ok := d.lines[f+"."+field]; return ok }
	if !contains(Measures, r.Measure) {
		d.errorf(at("measure"), f+".measure", "%q is not a measure (%s)", r.Measure, strings.Join(Measures, ", "))
		return
	}
	if r.Measure == "burst" {
		for _, k := range []string{"limit", "per", "windows", "release", "forgive", "adapt"} {
			if given(k) {
				d.errorf(at(k), f+"."+k, "does not apply to the burst measure (it uses soft, hard and expire)")
			}
		}
		if r.Hard <= 0 {
			d.errorf(at("hard"), f+".hard", "is required for the burst measure: the score that is always a bomb")
		}
		if r.Soft < 0 || r.Soft > r.Hard && r.Hard > 0 {
			d.errorf(at("soft"), f+".soft", "must be between 0 and hard")
		}
		if r.Expire == 0 {
			r.Expire = Duration(time.Hour)
		}
		return
	}
	for _, k := range []string{"soft", "hard", "expire"} {
		if given(k) {
			d.errorf(at(k), f+"."+k, "only applies to the burst measure")
		}
	}
	switch {
	case r.Measure == "distinct" && !contains(DistinctOf, r.Of):
		d.errorf(at("of"), f+".of", "%q: the distinct measure counts the values of one of %s", r.Of, strings.Join(DistinctOf, ", "))
	case r.Measure == "distinct" && r.Of == r.Key:
		d.errorf(at("of"), f+".of", "is the rule's key: a key has one value of itself")
	case r.Measure == "distinct" && given("forgive"):
		d.errorf(at("forgive"), f+".forgive", "does not apply to the distinct measure")
	case r.Measure != "distinct" && given("of"):
		d.errorf(at("of"), f+".of", "only applies to the distinct measure")
	}
	switch {
	case len(r.Windows) > 0 && (given("limit") || given("per")):
		d.errorf(at("windows"), f+".windows", "give limit and per, or windows, not both")
	case len(r.Windows) == 0:
		if r.Limit < 1 {
			d.errorf(at("limit"), f+".limit", "must be at least 1")
		}
		if r.Per <= 0 {
			d.errorf(at("per"), f+".per", "is required: the window, such as 1m")
		}
		r.Windows = []Window{{Limit: r.Limit, Per: r.Per}}
	}
	if r.Adapt != nil {
		longest := time.Duration(0)
		for _, w := range r.Windows {
			longest = max(longest, time.Duration(w.Per))
		}
		switch {
		case time.Duration(r.Adapt.History) < 2*longest:
			d.errorf(at("adapt"), f+".adapt.history", "must be at least twice the longest window (%s)", FormatDuration(longest))
		case r.Release != "":
			d.errorf(at("adapt"), f+".adapt", "does not go with release: below (which lifts at the limit, not the adapted one)")
		case r.Forgive > 0:
			d.errorf(at("adapt"), f+".adapt", "does not go with forgive")
		}
	}
	if r.Release != "" && r.Release != "below" {
		d.errorf(at("release"), f+".release", "%q is not a release (below)", r.Release)
	}
	if r.Forgive < 0 {
		d.errorf(at("forgive"), f+".forgive", "must not be negative")
	}
	if r.Forgive > 0 && len(r.Windows) > 1 {
		d.errorf(at("forgive"), f+".forgive", "works with one window")
	}
}

// node finds a top-level key's value node, for the line of an error.
func (d *decoder) node(key string) *yaml.Node {
	if d.root == nil {
		return nil
	}
	for i := 0; i+1 < len(d.root.Content); i += 2 {
		if d.root.Content[i].Value == key {
			return d.root.Content[i+1]
		}
	}
	return nil
}

// CheckIgnore validates an ignore entry: an address or CIDR, a mail
// address, "@domain", "<>" (the null sender) or "uid:N".
func CheckIgnore(s string) error {
	switch {
	case s == "":
		return errors.New("empty entry")
	case s == "<>":
		return nil // the null sender
	case strings.HasPrefix(s, "uid:"):
		if n, err := strconv.Atoi(s[4:]); err != nil || n < 0 {
			return fmt.Errorf("%q is not uid:N", s)
		}
	case strings.HasPrefix(s, "@"):
		if len(s) == 1 || strings.ContainsAny(s[1:], "@ ") {
			return fmt.Errorf("%q is not a valid @domain", s)
		}
	case strings.Contains(s, "@"):
		if strings.ContainsAny(s, " ") {
			return fmt.Errorf("%q is not a valid mail address", s)
		}
	case strings.Contains(s, "/"):
		if _, err := netip.ParsePrefix(s); err != nil {
			return fmt.Errorf("%q is not a valid CIDR", s)
		}
	default:
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Errorf("%q is not an address, CIDR, mail address or @domain", s)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// plainRule is a Rule without its MarshalYAML.
type plainRule Rule

// MarshalYAML writes a rule as it can be loaded again: limit and per, or
// windows, not both.
func (r Rule) MarshalYAML() (any, error) {
	p := plainRule(r)
	if len(p.Windows) == 1 && p.Windows[0].Limit == p.Limit && p.Windows[0].Per == p.Per {
		p.Windows = nil
	} else if len(p.Windows) > 0 {
		p.Limit, p.Per = 0, 0
	}
	return p, nil
}

// YAML returns the effective config as YAML.
func (c *Config) YAML() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	enc.Close()
	return buf.Bytes(), nil
}

// Warnings are what a valid config does that its author may not expect,
// one sentence each: `check` prints them and `run` logs them.
func Warnings(c *Config) []string {
	var out []string
	if w := ListenWarning(c.Listen); w != "" {
		out = append(out, w)
	}
	for i, in := range c.Inputs {
		if w := InputWarning(in.Path); w != "" {
			out = append(out, fmt.Sprintf("inputs[%d].path: %s", i, w))
		}
	}
	for _, r := range c.Rules {
		if r.Enforce != "clients" {
			continue
		}
		for _, a := range r.Actions {
			switch c.Actions[a].Type {
			case "postfix_map":
				out = append(out, fmt.Sprintf("rules %s: enforce: clients writes client addresses, not senders, into %s: list it under check_client_access as well as check_sender_access, or say enforce: sender", r.Name, c.Actions[a].Path))
			case "sendmail_access":
				out = append(out, fmt.Sprintf("rules %s: enforce: clients writes Connect: entries for client addresses, not From: entries, into %s (say enforce: sender for those)", r.Name, c.Actions[a].Path))
			}
		}
	}
	return out
}

// InputWarning says what is wrong with following path now, or "": a file
// or glob that is not there yet is followed when it appears; a directory
// or a file bombwatch may not read never gives a line.
func InputWarning(path string) string {
	if path == "-" || path == "journald" {
		return ""
	}
	if input.IsGlob(path) {
		if m, err := filepath.Glob(path); err != nil {
			return fmt.Sprintf("%q: %v", path, err)
		} else if len(m) == 0 {
			return fmt.Sprintf("%s matches no file yet: the files that come to match it are followed", path)
		}
		return ""
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Sprintf("%s does not exist yet: it is followed once it appears", path)
	case err != nil:
		return fmt.Sprintf("%s: %v", path, err)
	case st.IsDir():
		return fmt.Sprintf("%s is a directory, not a log: give the file (or a glob of files) in it", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("%s cannot be read: %v", path, errors.Unwrap(err))
	}
	f.Close()
	return ""
}

// ListenWarning says what is wrong with serving /metrics on addr, or "":
// the metrics name the logs, the rules and the keys blocked, and are
// served without authentication, so an address that is not loopback
// shows them to whoever can reach it.
func ListenWarning(addr string) string {
	if addr == "" {
		return ""
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	if host == "localhost" {
		return ""
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return ""
	}
	where := "on " + host
	if host == "" || host == "0.0.0.0" || host == "::" {
		where = "on every interface"
	}
	return fmt.Sprintf("listen: %s serves /metrics (log paths, rules, blocked keys) without authentication %s; use 127.0.0.1%s unless a firewall keeps others out",
		addr, where, addr[strings.LastIndexByte(addr, ':'):])
}
