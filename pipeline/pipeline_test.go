package pipeline_test

import (
	"bytes"
	"errors"
	"fmt"
	. "github.com/bombwatch/bombwatch/pipeline"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/actions"
	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/input"
	"github.com/bombwatch/bombwatch/internal/corpus"
	"github.com/bombwatch/bombwatch/internal/loggen"
	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/sqlite"
	"github.com/bombwatch/bombwatch/state"
)

var ref = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

func mustConfig(t testing.TB, yaml string) *config.Config {
	t.Helper()
	c, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func senderRule(limit int, per string) string {
	return fmt.Sprintf("rules:\n  - {name: s, on: [accepted], key: sender, limit: %d, per: %s, block: 1h}\n", limit, per)
}

// replay runs the pipeline over logs and returns its detections.
func replay(t testing.TB, cfg *config.Config, store state.Store, exec *actions.Executor, logs ...string) ([]Detection, *Pipeline) {
	t.Helper()
	var got []Detection
	p, err := config.NewPipeline(cfg, Options{Logger: slog.New(slog.DiscardHandler), Store: store, Executor: exec, OnDetection: func(d Detection) { got = append(got, d) }, CommitEvery: 100})
	if err != nil {
		t.Fatal(err)
	}
	var srcs []*input.Source
	for _, l := range logs {
		s, err := input.OpenSource(input.Spec{Path: l, Format: "auto"}, input.Options{Location: time.UTC, Now: func() time.Time { return ref }, Positions: p.Positions()})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		srcs = append(srcs, s)
	}
	if err := p.Process(input.NewMerger(srcs)); err != nil {
		t.Fatal(err)
	}
	if exec != nil {
		exec.Wait()
	}
	return got, p
}

func generate(t testing.TB, format string, lines int, seed uint64) string {
	log, _ := generateBombs(t, format, lines, seed)
	return log
}

func generateBombs(t testing.TB, format string, lines int, seed uint64) (string, []loggen.Bomb) {
	t.Helper()
	var buf bytes.Buffer
	bombs, err := loggen.Write(&buf, loggen.Options{Format: format, Lines: lines, Seed: seed, BombEvery: 1500})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), format+".log")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, ref, ref)
	return p, bombs
}

func blockedKeys(ds []Detection) map[string]bool {
	out := map[string]bool{}
	for _, d := range ds {
		if d.Event == "block" {
			out[d.Rule+" "+d.Key] = true
		}
	}
	return out
}

// TestDefaultConfigCatchesThePlantedBombs: with the built-in config, the
// generator's bombs, and nothing else, are blocked.
func TestDefaultConfigCatchesThePlantedBombs(t *testing.T) {
	for _, format := range loggen.Formats {
		t.Run(format, func(t *testing.T) {
			log, bombs := generateBombs(t, format, 30000, 7)
			if len(bombs) < 2 {
				t.Fatalf("only %d bombs planted", len(bombs))
			}
			got, _ := replay(t, config.Default(), nil, nil, log)
			gotKeys := blockedKeys(got)
			for _, b := range bombs {
				for _, rule := range b.Rules {
					k := rule + " " + b.Key
					if !gotKeys[k] {
						t.Errorf("bomb %q not blocked", k)
					}
					delete(gotKeys, k)
				}
			}
			for k := range gotKeys {
				t.Errorf("blocked %q, which is not a planted bomb", k)
			}
		})
	}
}

// groundTruth returns the senders that sent more than limit messages within
// some window (t-per, t], by brute force over every pair of events.
func groundTruth(t testing.TB, log string, limit int, per time.Duration) map[string]bool {
	t.Helper()
	s, err := input.OpenSource(input.Spec{Path: log, Format: "auto"}, input.Options{Location: time.UTC, Now: func() time.Time { return ref }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	times := map[string][]time.Time{}
	s.EachLine(func(line []byte, n int64, p parsers.Parser) {
		p.Parse(line, n, func(e *parsers.Event) {
			if e.Kind == parsers.Accepted && e.HasSender {
				// A sender key is folded as the MTAs' maps fold it.
				k := strings.ToLower(e.Sender)
				if k == "" {
					k = "<>"
				}
				times[k] = append(times[k], e.Time)
			}
		})
	})
	out := map[string]bool{}
	for k, ts := range times {
		for i := range ts {
			n := 0
			for j := range ts {
				// Events out of order count at the newest time before them,
				// as the window does; the corpus logs are in order.
				if !ts[j].After(ts[i]) && ts[j].After(ts[i].Add(-per)) && j <= i {
					n++
				}
			}
			if n > limit {
				out["s "+k] = true
			}
		}
	}
	return out
}

// TestSenderLimitMatchesGroundTruth: a rule "sender, limit N, per P" blocks
// each sender that sent more than N messages within P, and no other, on the
// project's logs and on real ones.
func TestSenderLimitMatchesGroundTruth(t *testing.T) {
	logs := []string{generate(t, "postfix", 20000, 3), generate(t, "sendmail", 20000, 4), generate(t, "qmail", 20000, 5)}
	if dir := corpusDir(t); dir != "" {
		for _, f := range []string{"postfix-logsums/mail.log", "parse-syslog-mail/postfix-plain.log", "parse-syslog-mail/sendmail-plain.log", "qmail-log-parser/qmail-send"} {
			logs = append(logs, filepath.Join(dir, f))
		}
	}
	for _, log := range logs {
		for _, lim := range []struct {
			limit int
			per   string
		}{{10, "1m"}, {2, "1m"}, {3, "10m"}, {30, "1m"}} {
			t.Run(filepath.Base(log)+fmt.Sprintf("/%d-per-%s", lim.limit, lim.per), func(t *testing.T) {
				per, _ := config.ParseDuration(lim.per)
				want := groundTruth(t, log, lim.limit, per)
				got, _ := replay(t, mustConfig(t, senderRule(lim.limit, lim.per)), nil, nil, log)
				gotKeys := blockedKeys(got)
				if !mapsEqual(gotKeys, want) {
					t.Errorf("blocked %v\nwant    %v", sortedKeys(gotKeys), sortedKeys(want))
				}
				for _, d := range got {
					if d.Event == "block" && (d.Value != float64(lim.limit+1) || d.Limit != float64(lim.limit) || d.Window != per.String()) {
						t.Errorf("detection %+v", d)
					}
				}
			})
		}
	}
}

func corpusDir(t *testing.T) string {
	var dir string
	t.Run("corpus", func(t *testing.T) { dir = corpus.Dir(t) })
	return dir
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// replayInParts writes a log a part at a time, and replays it after each
// with the same SQLite state, as a daemon restarted while its log grew
// would. It returns every detection, and the last part's pipeline.
func replayInParts(t testing.TB, cfg *config.Config, parts ...[]byte) ([]Detection, *Pipeline) {
	return replayInPartsChecking(t, cfg, nil, parts...)
}

// replayInPartsChecking is replayInParts that calls check, when not nil,
// with the state and the pipeline after each part.
func replayInPartsChecking(t testing.TB, cfg *config.Config, check func(state.Store, *Pipeline), parts ...[]byte) ([]Detection, *Pipeline) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	db := filepath.Join(dir, "state.db")
	var got []Detection
	var p *Pipeline
	for _, part := range parts {
		f, err := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(part)
		f.Close()
		os.Chtimes(log, ref, ref)
		s, err := sqlite.Open(db)
		if err != nil {
			t.Fatal(err)
		}
		var ds []Detection
		ds, p = replay(t, cfg, s, nil, log)
		if check != nil {
			check(s, p)
		}
		s.Close()
		got = append(got, ds...)
	}
	return got, p
}

// cutAtLine is the end of the last whole line in data[:n]: a writer
// flushes whole lines.
func cutAtLine(data []byte, n int) int { return bytes.LastIndexByte(data[:n], '\n') + 1 }

// joinLines is lines as a log writes them.
func joinLines(lines []string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

func writeLog(t testing.TB, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, ref, ref)
	return p
}

// qmgr writes one Postfix message: smtpd client= and qmgr from=.
func qmgr(sec int, qid, sender, ip string) []string {
	ts := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC).Add(time.Duration(sec) * time.Second).Format(time.RFC3339)
	return []string{
		fmt.Sprintf("%s mx postfix/smtpd[1]: %s: client=c.example[%s]", ts, qid, ip),
		fmt.Sprintf("%s mx postfix/qmgr[2]: %s: from=<%s>, size=100, nrcpt=1 (queue active)", ts, qid, sender),
	}
}

func messages(n, startSec, gap int, sender, ip string) []string {
	var out []string
	for i := range n {
		out = append(out, qmgr(startSec+i*gap, fmt.Sprintf("QQ%04dX%03d", startSec, i), sender, ip)...)
	}
	return out
}

func TestBlockLifecycle(t *testing.T) {
	cfg := mustConfig(t, "rules:\n  - {name: s, on: [accepted], key: sender, limit: 3, per: 1m, block: 10m}\n")
	lines := messages(5, 0, 1, "a@example.org", "192.0.2.1")                  // blocked at the 4th
	lines = append(lines, messages(5, 3, 1, "b@example.org", "192.0.2.2")...) // out of time order: read after a's
	lines = append(lines, messages(1, 1200, 1, "c@example.org", "192.0.2.3")...)
	got, p := replay(t, cfg, nil, nil, writeLog(t, lines...))
	var summary []string
	for _, d := range got {
		summary = append(summary, fmt.Sprintf("%s %s %s %s", d.Event, d.Key, d.Time.Format("15:04:05"), d.Reason))
	}
	want := []string{
		"block a@example.org 10:00:03 ",
		"block b@example.org 10:00:06 ",
		"unblock a@example.org 10:10:03 expired",
		"unblock b@example.org 10:10:06 expired",
	}
	if !slices.Equal(summary, want) {
		t.Errorf("detections\n%s\nwant\n%s", strings.Join(summary, "\n"), strings.Join(want, "\n"))
	}
	if len(p.Active()) != 0 {
		t.Errorf("active = %v", p.Active())
	}
	if d := got[0]; d.Until == nil || !d.Until.Equal(d.Time.Add(10*time.Minute)) || d.File == "" || d.Line != 8 {
		t.Errorf("first detection = %+v", d)
	}
}

func TestIgnoreAndLoopback(t *testing.T) {
	cfg := mustConfig(t, `
ignore: [192.0.2.0/24, boss@example.org, "@partner.example"]
rules:
  - {name: s, on: [accepted], key: sender, limit: 1, per: 1m}
  - {name: c, on: [accepted], key: client_ip, limit: 1, per: 1m}
  - {name: n, on: [accepted], key: client_net, prefix: {ipv4: 24, ipv6: 48}, limit: 1, per: 1m}
`)
	var lines []string
	lines = append(lines, messages(3, 0, 1, "x@example.com", "192.0.2.9")...)        // ignored client
	lines = append(lines, messages(3, 10, 1, "boss@EXAMPLE.org", "198.51.100.1")...) // ignored sender (domain case)
	lines = append(lines, messages(3, 20, 1, "a@partner.example", "198.51.100.2")...)
	lines = append(lines, messages(3, 30, 1, "l1@example.com", "127.0.0.1")...) // loopback: never a client key
	lines = append(lines, messages(3, 40, 1, "l2@example.com", "::1")...)
	lines = append(lines, messages(3, 50, 1, "Boss@Example.ORG", "198.51.100.3")...) // ignored sender, local part case: maps fold it
	// One sender in two spellings is one key, as it is one map entry.
	lines = append(lines, messages(1, 60, 1, "Mixed@example.com", "127.0.0.2")...)
	lines = append(lines, messages(1, 61, 1, "mixed@EXAMPLE.com", "127.0.0.2")...)
	got, p := replay(t, cfg, nil, nil, writeLog(t, lines...))
	keys := blockedKeys(got)
	want := map[string]bool{"s l1@example.com": true, "s l2@example.com": true, "s mixed@example.com": true}
	if !mapsEqual(keys, want) {
		t.Errorf("blocked %v, want %v", sortedKeys(keys), sortedKeys(want))
	}
	if p.Stats.Ignored != 12 {
		t.Errorf("ignored %d events, want 12", p.Stats.Ignored)
	}
}

func TestClientNetAndNullSender(t *testing.T) {
	cfg := mustConfig(t, `
rules:
  - {name: n, on: [accepted], key: client_net, prefix: {ipv4: 24, ipv6: 48}, limit: 2, per: 1m}
  - {name: s, on: [accepted], key: sender, limit: 2, per: 1m}
  - {name: d, on: [accepted], key: sender_domain, limit: 2, per: 1m}
`)
	var lines []string
	for i := range 3 {
		lines = append(lines, qmgr(i, fmt.Sprintf("NETAA%d", i), fmt.Sprintf("u%d@a%d.example", i, i), fmt.Sprintf("203.0.113.%d", 10+i))...)
		lines = append(lines, qmgr(i, fmt.Sprintf("NETBB%d", i), fmt.Sprintf("v%d@b%d.example", i, i), fmt.Sprintf("2001:db8:1:%d::1", i))...)
		lines = append(lines, qmgr(10+i, fmt.Sprintf("NULLQ%d", i), "", "198.51.100.1")...)
	}
	got, _ := replay(t, cfg, nil, nil, writeLog(t, lines...))
	want := map[string]bool{"n 203.0.113.0/24": true, "n 2001:db8:1::/48": true, "s <>": true, "n 198.51.100.0/24": true}
	if keys := blockedKeys(got); !mapsEqual(keys, want) {
		t.Errorf("blocked %v, want %v", sortedKeys(keys), sortedKeys(want))
	}
}

// TestRestartGivesTheSameDecisions replays a log in two parts, with the
// state saved in SQLite between them, as if the daemon had been restarted
// while the log grew; the detections must be those of one uninterrupted
// replay.
func TestRestartGivesTheSameDecisions(t *testing.T) {
	full := generate(t, "postfix", 20000, 11)
	data, _ := os.ReadFile(full)
	want, _ := replay(t, config.Default(), nil, nil, full)
	if len(want) < 4 {
		t.Fatalf("only %d detections in the uninterrupted replay", len(want))
	}
	cfg := config.Default()
	for _, cut := range []int{len(data) / 3, len(data) / 2, len(data) * 5 / 6} {
		cut = cutAtLine(data, cut)
		got, p := replayInParts(t, cfg, data[:cut], data[cut:])
		if len(got) != len(want) {
			t.Fatalf("cut at %d: %d detections, want %d", cut, len(got), len(want))
		}
		for i := range got {
			g, w := got[i], want[i]
			if g.Event != w.Event || g.Key != w.Key || !g.Time.Equal(w.Time) || g.Value != w.Value || g.Line != w.Line {
				t.Errorf("cut at %d: detection %d = %+v, want %+v", cut, i, g, w)
			}
		}
		if p.Stats.Events[parsers.Accepted] == 0 {
			t.Errorf("cut at %d: the second part ran no event", cut)
		}
	}
}

// TestFullBatchesKeepTheStoreSmallAndTheDecisionsTheSame: with a full
// batch every few hundred windows saved, a replay stopped twice decides
// what one that never stopped did, and the store holds at most about
// twice the windows kept in memory.
func TestFullBatchesKeepTheStoreSmallAndTheDecisionsTheSame(t *testing.T) {
	defer SetMinFull(300)()
	full := generate(t, "postfix", 20000, 12)
	data, _ := os.ReadFile(full)
	want, _ := replay(t, config.Default(), nil, nil, full)
	a, b := cutAtLine(data, len(data)/3), cutAtLine(data, 2*len(data)/3)
	got, _ := replayInPartsChecking(t, config.Default(), func(s state.Store, p *Pipeline) {
		records := 0
		if err := s.Windows(func(*state.Window) { records++ }); err != nil {
			t.Fatal(err)
		}
		if keys := p.Keys(); records > 2*keys+300+100 {
			t.Errorf("the store holds %d windows for %d keys in memory", records, keys)
		}
	}, data[:a], data[a:b], data[b:])
	if len(got) != len(want) {
		t.Fatalf("%d detections, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Event != w.Event || g.Key != w.Key || !g.Time.Equal(w.Time) || g.Value != w.Value || g.Line != w.Line {
			t.Errorf("detection %d = %+v, want %+v", i, g, w)
		}
	}
}

// TestHostileSenderReachesTheScriptAsOneArgument runs a bomb whose sender
// holds shell syntax through the pipeline to a script action.
func TestHostileSenderReachesTheScriptAsOneArgument(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "args")
	script := filepath.Join(dir, "hook.sh")
	os.WriteFile(script, []byte("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > \""+out+"\"\n"), 0o755)
	cfg := mustConfig(t, fmt.Sprintf(`
rules:
  - {name: s, on: [accepted], key: sender, limit: 2, per: 1m, actions: [log, hook]}
actions:
  hook: {type: script, command: [%q, "{rule}", "{key}"]}
`, script))
	hostile := `"$(reboot);x"@evil.example`
	log := writeLog(t, messages(3, 0, 1, hostile, "203.0.113.5")...)

	// Without Act the script is only reported.
	got, _ := replay(t, cfg, nil, &actions.Executor{Act: false}, log)
	if len(got) != 1 || got[0].Executed || !slices.Equal(got[0].Actions, []string{"log", "hook"}) {
		t.Fatalf("detections without act = %+v", got)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("the script ran without --act")
	}

	mem := state.NewMemory()
	got, _ = replay(t, cfg, mem, &actions.Executor{Act: true}, log)
	if len(got) != 1 || !got[0].Executed || got[0].Key != hostile {
		t.Fatalf("detections with act = %+v", got)
	}
	args, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(args) != "s\n"+hostile+"\n" {
		t.Errorf("script got arguments %q", args)
	}
	blocks, _ := mem.Blocks(true, time.Time{})
	if len(blocks) != 1 || blocks[0].Actions["hook"] != state.Applied || blocks[0].Actions["log"] != state.Applied {
		t.Errorf("blocks = %+v", blocks)
	}
}

// TestBadInput: garbage, binary, huge and truncated lines, CRLF, an empty
// file: skipped lines, never a panic, and the good lines around them count.
func TestBadInput(t *testing.T) {
	good := messages(3, 0, 1, "a@example.org", "192.0.2.1")
	bad := []string{
		"\x00\x01\x02\xff\xfe binary",
		strings.Repeat("x", 1<<20),
		"2026-11-20T10:00:01Z mx postfix/qmgr[2]: TRUNC1: from=<a@example.org>, si",
		"2026-11-20T10:00:01Z mx postfix/qmgr[2]: BAD8: from=<\xff\xfe@example.org>, size=1, nrcpt=1 (queue active)",
		"2026-11-20T10:00:01Z",
		"",
	}
	lines := append(append([]string{}, good[:2]...), bad...)
	lines = append(lines, good[2:]...)
	log := writeLog(t, lines...)
	crlf := writeLog(t, strings.ReplaceAll(strings.Join(good, "\n"), "\n", "\r\n"))
	empty := filepath.Join(t.TempDir(), "empty.log")
	os.WriteFile(empty, nil, 0o644)
	cfg := mustConfig(t, senderRule(2, "1m"))
	for _, l := range []string{log, crlf} {
		got, p := replay(t, cfg, nil, nil, l, empty)
		if len(got) != 1 || got[0].Key != "a@example.org" {
			t.Errorf("%s: detections = %+v", l, got)
		}
		if p.Stats.Events[parsers.Accepted] < 3 {
			t.Errorf("%s: %d accepted", l, p.Stats.Events[parsers.Accepted])
		}
	}
	if _, err := input.OpenSource(input.Spec{Path: filepath.Join(t.TempDir(), "missing.log")}, input.Options{}); err == nil || !strings.Contains(err.Error(), "missing.log") {
		t.Errorf("missing file: %v", err)
	}
	garbage := writeLog(t, "hello", "world")
	if _, err := input.OpenSource(input.Spec{Path: garbage, Format: "auto"}, input.Options{}); err == nil || !strings.Contains(err.Error(), "--format") {
		t.Errorf("undetectable file: %v", err)
	}
}

// TestStatsRetention: the per-minute counts reports read are saved with
// each commit, and those older than the retention pruned.
func TestStatsRetention(t *testing.T) {
	cfg := mustConfig(t, "retention: 2h\nrules: []\n")
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var lines []string
	base := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	for h := range 6 {
		ts := base.Add(time.Duration(h) * time.Hour).Format(time.RFC3339)
		lines = append(lines, fmt.Sprintf("%s mx postfix/smtpd[1]: RETQ%05d: client=c.example[192.0.2.7]", ts, h),
			fmt.Sprintf("%s mx postfix/qmgr[2]: RETQ%05d: from=<r@example.org>, size=100, nrcpt=2 (queue active)", ts, h))
		// Lines without events, so that each hour is read in a batch of its
		// own: stats are saved, and pruned, a read batch at a time.
		for range 9000 {
			lines = append(lines, ts+" mx postfix/anvil[3]: statistics: max cache size 1")
		}
	}
	log := writeLog(t, lines...)
	p, err := config.NewPipeline(cfg, Options{Store: db, Logger: slog.New(slog.DiscardHandler), CommitEvery: 1})
	if err != nil {
		t.Fatal(err)
	}
	src, err := input.OpenSource(input.Spec{Path: log}, input.Options{Location: time.UTC, Stats: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := p.Process(input.NewMerger([]*input.Source{src})); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	var minutes []int64
	db.Stats(0, 1<<40, func(st *state.Stat) {
		got[st.KeyType+" "+st.Key] += st.Messages
		if st.KeyType == "sender" {
			minutes = append(minutes, st.Minute)
			if st.Bytes != 100 || st.Recipients != 2 {
				t.Errorf("stat %+v", st)
			}
		}
	})
	// Hours 3, 4 and 5 are within 2 h of the last commit's clock; the
	// batch that holds hour 3 may hold the end of hour 2 too.
	if got["kind accepted"] < 3 || got["kind accepted"] > 4 || got["sender r@example.org"] != got["kind accepted"] ||
		got["client_ip 192.0.2.7"] != got["kind accepted"] {
		t.Errorf("stats %v", got)
	}
	for _, m := range minutes {
		if m*60 < base.Add(2*time.Hour).Unix() {
			t.Errorf("a minute older than the retention is left: %v", time.Unix(m*60, 0).UTC())
		}
	}
}

// TestResumeKeepsPostfixCorrelation: a replay resumed between a message's
// smtpd line and its qmgr line still knows the message's client.
func TestResumeKeepsPostfixCorrelation(t *testing.T) {
	cfg := mustConfig(t, "rules:\n  - {name: c, on: [accepted], key: client_ip, limit: 1, per: 1m}\n")
	ts := "2026-11-20T10:00:00Z"
	first := []string{
		ts + " mx postfix/smtpd[1]: CORRQ0001: client=c.example[192.0.2.77]",
		ts + " mx postfix/smtpd[1]: CORRQ0002: client=c.example[192.0.2.77]",
	}
	second := []string{
		ts + " mx postfix/qmgr[2]: CORRQ0001: from=<a@example.org>, size=1, nrcpt=1 (queue active)",
		ts + " mx postfix/qmgr[2]: CORRQ0002: from=<b@example.org>, size=1, nrcpt=1 (queue active)",
	}
	got, _ := replayInParts(t, cfg, joinLines(first), joinLines(second))
	if len(got) != 1 || got[0].Key != "192.0.2.77" {
		t.Errorf("detections %+v: the resumed replay lost the client of the messages", got)
	}
}

// heldStore is a store whose commits wait until the test lets them land.
type heldStore struct {
	*state.Memory
	entered chan struct{}
	land    chan error // the commit's error
}

func (s *heldStore) Commit(b *state.Batch) error {
	s.entered <- struct{}{}
	if err := <-s.land; err != nil {
		return err
	}
	return s.Memory.Commit(b)
}

// TestAnOutcomeReportedWhileItsBlockIsBeingSavedIsSaved: a batch that
// starts a block is saved in the background like any other; an action's
// outcome reported before that save lands is not lost: Blocking says a
// block waits to be saved again (an idle daemon commits on it), and the
// next commit saves it with the outcome.
func TestAnOutcomeReportedWhileItsBlockIsBeingSavedIsSaved(t *testing.T) {
	for _, fails := range []bool{false, true} {
		t.Run(fmt.Sprintf("save fails %v", fails), func(t *testing.T) { outcomeDuringSave(t, fails) })
	}
}

// outcomeDuringSave: with fails, the save under way fails, and the next
// saves the block with the outcome.
func outcomeDuringSave(t *testing.T, fails bool) {
	cfg := mustConfig(t, "rules:\n  - {name: s, on: [accepted], key: sender, limit: 1, per: 1m, block: 10m, actions: [log]}\n")
	store := &heldStore{Memory: state.NewMemory(), entered: make(chan struct{}), land: make(chan error)}
	p, err := config.NewPipeline(cfg, Options{Logger: slog.New(slog.DiscardHandler), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		p.Event(&parsers.Event{Kind: parsers.Accepted, Time: ref.Add(time.Duration(i) * time.Second), Sender: "a@example.org", HasSender: true, ClientIP: netip.MustParseAddr("192.0.2.1")})
	}
	active := p.Active()
	if len(active) != 1 {
		t.Fatalf("blocks in force: %+v (%+v)", active, p.Stats)
	}
	id := active[0].ID
	returned := make(chan error, 1)
	go func() { returned <- p.CommitNow(nil, false) }()
	<-store.entered
	select {
	case err := <-returned:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a batch starting a block was not saved in the background: the commit waited for the store")
	}
	p.Record(id, "log", state.Applied) // while the batch is being saved
	if fails {
		store.land <- errors.New("disk full")
		if err := p.Settle(); err == nil {
			t.Fatal("the failed save was not reported")
		}
		go func() { <-store.entered; store.land <- nil }() // the failed batch, tried again
		if err := p.Settle(); err != nil {
			t.Fatal(err)
		}
		go func() { <-store.entered; store.land <- nil }() // the next, with the block again
		if err := p.Commit(nil); err != nil {
			t.Fatal(err)
		}
	} else {
		store.land <- nil
		if err := p.Settle(); err != nil {
			t.Fatal(err)
		}
		if !p.Blocking() {
			t.Fatal("the outcome reported during the save waits for no commit")
		}
		go func() { <-store.entered; store.land <- nil }()
		if err := p.Commit(nil); err != nil {
			t.Fatal(err)
		}
	}
	if p.Blocking() {
		t.Error("saved, the block still waits to be saved")
	}
	saved, _ := store.Blocks(true, time.Time{})
	if len(saved) != 1 || saved[0].Actions["log"] != state.Applied {
		t.Fatalf("saved: %+v, want the block with the outcome reported during its save", saved)
	}
	if got := p.Active()[0].Actions["log"]; got != state.Applied {
		t.Errorf("in memory: %q", got)
	}
}

// countingStore counts the full batches committed to it.
type countingStore struct {
	*sqlite.Store
	full int
}

func (s *countingStore) Commit(b *state.Batch) error {
	if b.Full {
		s.full++
	}
	return s.Store.Commit(b)
}

// TestNewKeysMakeNoFullBatch: a full batch rewrites every key, to drop
// the older windows the store keeps; a flood of new keys leaves none, and
// makes no full batch — rewriting the same keys does.
func TestNewKeysMakeNoFullBatch(t *testing.T) {
	defer SetMinFull(300)()
	cfg := mustConfig(t, senderRule(1000, "1d"))
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store := &countingStore{Store: db}
	p, err := config.NewPipeline(cfg, Options{Logger: slog.New(slog.DiscardHandler), Store: store, CommitEvery: 100})
	if err != nil {
		t.Fatal(err)
	}
	send := func(i int) {
		p.Event(&parsers.Event{Kind: parsers.Accepted, Time: ref.Add(time.Duration(i) * time.Millisecond), Sender: fmt.Sprintf("s%d@example.org", i%3000), HasSender: true, ClientIP: netip.MustParseAddr("192.0.2.1")})
		if i%100 == 99 {
			if err := p.Commit(nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 3000 {
		send(i)
	}
	if store.full != 0 {
		t.Errorf("3,000 new keys made %d full batches, want none", store.full)
	}
	for i := 3000; i < 6100; i++ { // the same keys again: each rewritten once, and 100 twice
		send(i)
	}
	if store.full != 1 {
		t.Errorf("3,000 keys rewritten made %d full batches, want 1", store.full)
	}
	records := 0
	store.Windows(func(*state.Window) { records++ })
	if records != 3000 {
		t.Errorf("the store keeps %d windows of 3,000 keys", records)
	}
}
