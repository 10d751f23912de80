package pipeline_test

import (
	"cmp"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/input"
	. "github.com/bombwatch/bombwatch/pipeline"
	"github.com/bombwatch/bombwatch/sqlite"
	"github.com/bombwatch/bombwatch/state"
)

var base = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// msg writes one Postfix message at the given offset from base.
type msg struct {
	at     time.Duration
	sender string
	ip     string
	size   int
	nrcpt  int
	sasl   string
	date   string // Date: header, when logged
}

var qidSerial int

func postfixLines(ms ...msg) []string {
	var out []string
	for _, m := range ms {
		qidSerial++
		qid := fmt.Sprintf("QQ%08X", qidSerial)
		ts := base.Add(m.at).Format(time.RFC3339Nano)
		client := fmt.Sprintf("%s %s postfix/smtpd[1]: %s: client=c.example[%s]", ts, "mx", qid, m.ip)
		if m.sasl != "" {
			client += ", sasl_method=PLAIN, sasl_username=" + m.sasl
		}
		out = append(out, client)
		if m.date != "" {
			out = append(out, fmt.Sprintf("%s mx postfix/cleanup[2]: %s: info: header Date: %s from c.example[%s]; from=<%s> to=<r@example.org> proto=ESMTP helo=<x>", ts, qid, m.date, m.ip, m.sender))
		}
		size, nrcpt := max(m.size, 100), max(m.nrcpt, 1)
		out = append(out, fmt.Sprintf("%s mx postfix/qmgr[3]: %s: from=<%s>, size=%d, nrcpt=%d (queue active)", ts, qid, m.sender, size, nrcpt))
	}
	return out
}

func every(n int, start, gap time.Duration, m msg) []msg {
	var out []msg
	for i := range n {
		m.at = start + time.Duration(i)*gap
		out = append(out, m)
	}
	return out
}

func summary(ds []Detection) []string {
	var out []string
	for _, d := range ds {
		s := fmt.Sprintf("%s %s %s %s", d.Event, d.Rule, d.Key, d.Time.Sub(base))
		if d.Event == "unblock" {
			s += " " + d.Reason
		}
		out = append(out, s)
	}
	return out
}

func checkSummary(t *testing.T, got []Detection, want ...string) {
	t.Helper()
	if s := summary(got); !slices.Equal(s, want) {
		t.Errorf("detections\n%s\nwant\n%s", strings.Join(s, "\n"), strings.Join(want, "\n"))
	}
}

// TestSMTPDoSDetector: threshold 5 in 10 s, expire 30 s, behind -10. The
// 6th mail starts a block that covers ten mails, the 6th to the 15th; the
// 16th passes; and a block never outlasts 30 s.
func TestSMTPDoSDetector(t *testing.T) {
	cfg := mustConfig(t, "rules:\n  - {name: dos, on: [accepted], key: client_ip, limit: 5, per: 10s, block: 30s, forgive: 10}\n")
	m := msg{sender: "a@example.org", ip: "192.0.2.9"}
	got, _ := replay(t, cfg, nil, nil, writeLog(t, postfixLines(every(16, 0, 500*time.Millisecond, m)...)...))
	checkSummary(t, got,
		"block dos 192.0.2.9 2.5s",            // the 6th mail
		"unblock dos 192.0.2.9 7.5s forgiven", // the 16th passes
	)

	// Six mails, then silence: the block ends after 30 s, and the host is
	// forgotten, as smtp-dos-detector's entry expires.
	lines := postfixLines(every(6, 0, 500*time.Millisecond, m)...)
	lines = append(lines, postfixLines(msg{at: time.Minute, sender: "other@example.org", ip: "198.51.100.1"})...)
	lines = append(lines, postfixLines(every(5, 61*time.Second, 100*time.Millisecond, m)...)...)
	got, _ = replay(t, cfg, nil, nil, writeLog(t, lines...))
	checkSummary(t, got,
		"block dos 192.0.2.9 2.5s",
		"unblock dos 192.0.2.9 32.5s expired",
	)
}

// TestForgiveAndRelease: with both, a block ends when the count is back at
// 0, when the rate — not forgiven — is back under the limit, or by time,
// whichever comes first.
func TestForgiveAndRelease(t *testing.T) {
	cfg := mustConfig(t, "rules:\n  - {name: fr, on: [accepted], key: client_ip, limit: 5, per: 10s, block: 1h, forgive: 10, release: below}\n")
	m := msg{sender: "a@example.org", ip: "192.0.2.8"}
	lines := postfixLines(every(6, 0, 500*time.Millisecond, m)...)
	lines = append(lines, postfixLines(msg{at: time.Minute, sender: "b@example.org", ip: "198.51.100.9"})...)
	got, _ := replay(t, cfg, nil, nil, writeLog(t, lines...))
	checkSummary(t, got,
		"block fr 192.0.2.8 2.5s",
		"unblock fr 192.0.2.8 10s released", // the first mail leaves the 10 s window
	)
}

// TestQmailMonitor: more than 10 in 30 minutes blocks; when the count is
// back at 10 the key is "accepted again" — released.
func TestQmailMonitor(t *testing.T) {
	cfg := mustConfig(t, "rules:\n  - {name: mon, on: [accepted], key: sender, limit: 10, per: 30m, block: 0, release: below}\n")
	m := msg{sender: "list@example.org", ip: "192.0.2.10"}
	lines := postfixLines(every(11, 0, time.Minute, m)...) // 0..10 min
	lines = append(lines, postfixLines(msg{at: time.Hour, sender: "x@example.com", ip: "198.51.100.2"})...)
	got, _ := replay(t, cfg, nil, nil, writeLog(t, lines...))
	checkSummary(t, got,
		"block mon list@example.org 10m0s",
		"unblock mon list@example.org 30m0s released", // the first mail leaves the window
	)

	// More mail while blocked pushes the release later: 11 more, one a
	// minute, keep it over until 10 minutes after the last.
	lines = postfixLines(every(22, 0, time.Minute, m)...)
	lines = append(lines, postfixLines(msg{at: 2 * time.Hour, sender: "x@example.com", ip: "198.51.100.2"})...)
	got, _ = replay(t, cfg, nil, nil, writeLog(t, lines...))
	checkSummary(t, got,
		"block mon list@example.org 10m0s",
		"unblock mon list@example.org 41m0s released", // mails 11..21 (min 11..21): the 11th leaves at 41 min
	)
}

// TestFMLBurst: mails at 0, 2.5, 5, 7.5 and 10 s give E{t} ≈ 0.833 at the
// fifth; with hard 0.8 that is a bomb, and the detection shows the score.
func TestFMLBurst(t *testing.T) {
	cfg := mustConfig(t, "rules:\n  - {name: fml, on: [accepted], key: sender, measure: burst, soft: 0.5, hard: 0.8}\n")
	m := msg{sender: "burst@example.org", ip: "192.0.2.11"}
	got, _ := replay(t, cfg, nil, nil, writeLog(t, postfixLines(every(5, 0, 2500*time.Millisecond, m)...)...))
	checkSummary(t, got, "block fml burst@example.org 10s")
	if len(got) == 1 && (math.Abs(got[0].Value-0.8333) > 0.001 || got[0].Limit != 0.8 || got[0].Window != "1h0m0s") {
		t.Errorf("detection %+v", got[0])
	}
	// Mails trickling in slowly but written back to back (their Date:
	// headers a second apart): E{d} > E{t} and > soft.
	var ms []msg
	for i := range 4 {
		ms = append(ms, msg{at: time.Duration(i) * 10 * time.Minute, sender: "late@example.org", ip: "192.0.2.12",
			date: base.Add(time.Duration(i) * time.Second).Format("Mon, 2 Jan 2006 15:04:05 -0700")})
	}
	got, _ = replay(t, cfg, nil, nil, writeLog(t, postfixLines(ms...)...))
	checkSummary(t, got, "block fml late@example.org 20m0s")
	if len(got) == 1 && got[0].Limit != 0.5 {
		t.Errorf("decided by soft: %+v", got[0])
	}
}

// TestMoxMasks: several client_net rules give mox's /32, /26, /21 (IPv4)
// and /64, /48, /32 (IPv6) masks.
func TestMoxMasks(t *testing.T) {
	cfg := mustConfig(t, `
rules:
  - {name: m1, on: [accepted], key: client_net, prefix: {ipv4: 32, ipv6: 64}, limit: 2, per: 1m}
  - {name: m2, on: [accepted], key: client_net, prefix: {ipv4: 26, ipv6: 48}, limit: 2, per: 1m}
  - {name: m3, on: [accepted], key: client_net, prefix: {ipv4: 21, ipv6: 32}, limit: 2, per: 1m}
`)
	var ms []msg
	for i, ip := range []string{"203.0.113.1", "203.0.113.1", "203.0.113.1", "203.0.113.62", "203.0.112.200",
		"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2::3", "2001:db8:1:9::1", "2001:db8:77::1"} {
		ms = append(ms, msg{at: time.Duration(i) * time.Second, sender: fmt.Sprintf("s%d@example.org", i), ip: ip})
	}
	got, _ := replay(t, cfg, nil, nil, writeLog(t, postfixLines(ms...)...))
	want := map[string]bool{
		"m1 203.0.113.1/32": true, "m2 203.0.113.0/26": true, "m3 203.0.112.0/21": true,
		"m1 2001:db8:1:2::/64": true, "m2 2001:db8:1::/48": true, "m3 2001:db8::/32": true,
	}
	if keys := blockedKeys(got); !mapsEqual(keys, want) {
		t.Errorf("blocked %v\nwant    %v", sortedKeys(keys), sortedKeys(want))
	}
}

func TestMeasures(t *testing.T) {
	cfg := mustConfig(t, `
rules:
  - {name: bytes, on: [accepted], key: sender, measure: bytes, limit: 10000, per: 1m}
  - {name: rcpts, on: [accepted], key: client_ip, measure: recipients, limit: 10, per: 1m}
  - {name: two, on: [accepted], key: sasl_user, windows: [{limit: 3, per: 10s}, {limit: 5, per: 1h}]}
`)
	var ms []msg
	ms = append(ms, every(4, 0, time.Second, msg{sender: "big@example.org", ip: "192.0.2.20", size: 3000})...)
	ms = append(ms, every(3, 10*time.Second, time.Second, msg{sender: "x@example.org", ip: "192.0.2.21", nrcpt: 4})...)
	ms = append(ms, every(6, 20*time.Second, time.Minute, msg{sender: "y@example.org", ip: "192.0.2.22", sasl: "slow"})...)
	got, _ := replay(t, cfg, nil, nil, writeLog(t, postfixLines(ms...)...))
	checkSummary(t, got,
		"block bytes big@example.org 3s", // 4 × 3000 > 10000
		"block rcpts 192.0.2.21 12s",     // 3 × 4 > 10
		"block two slow 5m20s",           // the 6th within the hour
	)
	if len(got) == 3 && (got[0].Value != 12000 || got[1].Value != 12 || got[2].Value != 6 || got[2].Window != "1h0m0s" || got[2].Limit != 5) {
		t.Errorf("values: %+v", got)
	}
}

func TestEscalate(t *testing.T) {
	cfg := mustConfig(t, "rules:\n  - {name: esc, on: [accepted], key: sender, limit: 2, per: 1m, block: 1h, escalate: {factor: 2, max: 1w}}\n")
	m := msg{sender: "again@example.org", ip: "192.0.2.30"}
	var ms []msg
	for _, start := range []time.Duration{0, 2 * time.Hour, 5 * time.Hour, 5*time.Hour + 8*24*time.Hour} {
		ms = append(ms, every(3, start, time.Second, m)...)
	}
	ms = append(ms, msg{at: 20 * 24 * time.Hour, sender: "z@example.org", ip: "198.51.100.3"})
	lines := postfixLines(ms...)
	got, _ := replay(t, cfg, nil, nil, writeLog(t, lines...))
	var lengths []string
	for _, d := range got {
		if d.Event == "block" {
			lengths = append(lengths, d.Until.Sub(d.Time).String())
		}
	}
	// 1h, then 2h, then 4h; a week clean starts again at 1h.
	if want := []string{"1h0m0s", "2h0m0s", "4h0m0s", "1h0m0s"}; !slices.Equal(lengths, want) {
		t.Errorf("block lengths %v, want %v", lengths, want)
	}

	// Remembered in SQLite: the same in two halves.
	half := len(postfixLines(every(6, 0, time.Second, m)...))
	more, _ := replayInParts(t, cfg, joinLines(lines[:half]), joinLines(lines[half:]))
	for _, d := range more {
		if d.Event == "block" {
			lengths = append(lengths, d.Until.Sub(d.Time).String())
		}
	}
	if want := []string{"1h0m0s", "2h0m0s", "4h0m0s", "1h0m0s"}; !slices.Equal(lengths[4:], want) {
		t.Errorf("block lengths over a restart %v, want %v", lengths[4:], want)
	}
}

// TestIgnoreKeys: "uid:N" and "<>" keep a uid or the null sender from being
// a key, without dropping the event for the other rules.
func TestIgnoreKeys(t *testing.T) {
	cfg := mustConfig(t, `
ignore: ["<>", "uid:7791"]
rules:
  - {name: s, on: [accepted], key: sender, limit: 2, per: 1m}
  - {name: u, on: [accepted], key: uid, limit: 2, per: 1m}
  - {name: c, on: [accepted], key: client_ip, limit: 2, per: 1m}
`)
	var lines []string
	for i := range 3 {
		ts := base.Add(time.Duration(i) * time.Second).Format(time.RFC3339)
		lines = append(lines,
			fmt.Sprintf("%s mx postfix/pickup[1]: UIDQ%05d: uid=7791 from=<qmaild>", ts, i),
			fmt.Sprintf("%s mx postfix/qmgr[2]: UIDQ%05d: from=<smtp%d@example.org>, size=1, nrcpt=1 (queue active)", ts, i, i),
			fmt.Sprintf("%s mx postfix/pickup[1]: UIDR%05d: uid=1000 from=<www>", ts, i),
			fmt.Sprintf("%s mx postfix/qmgr[2]: UIDR%05d: from=<www%d@example.org>, size=1, nrcpt=1 (queue active)", ts, i, i))
	}
	lines = append(lines, postfixLines(every(3, 10*time.Second, time.Second, msg{sender: "", ip: "192.0.2.50"})...)...)
	got, _ := replay(t, cfg, nil, nil, writeLog(t, lines...))
	want := map[string]bool{"u 1000": true, "c 192.0.2.50": true}
	if keys := blockedKeys(got); !mapsEqual(keys, want) {
		t.Errorf("blocked %v, want %v", sortedKeys(keys), sortedKeys(want))
	}
}

func TestSenderOptions(t *testing.T) {
	cfg := mustConfig(t, `
ignore: ["<>", "uid:7791"]
rules:
  - {name: s, on: [accepted], key: sender, limit: 3, per: 1m, strip_tag: true, strip_batv: true, decode_srs: true}
  - {name: d, on: [accepted], key: sender_domain, limit: 3, per: 1m, decode_srs: true}
`)
	var ms []msg
	for i, s := range []string{"bob+news@example.org", "prvs=1234abcdef=bob@example.org", "SRS0=HHH=TT=example.org=bob@fwd.example",
		"SRS1=HHH=fwd.example==HHH=TT=example.org=bob@fwd2.example", "<>", "", ""} {
		ms = append(ms, msg{at: time.Duration(i) * time.Second, sender: s, ip: "192.0.2.40"})
	}
	ms[4].sender = ""
	got, _ := replay(t, cfg, nil, nil, writeLog(t, postfixLines(ms...)...))
	want := map[string]bool{"s bob@example.org": true, "d example.org": true}
	if keys := blockedKeys(got); !mapsEqual(keys, want) {
		t.Errorf("blocked %v, want %v", sortedKeys(keys), sortedKeys(want))
	}
}

// TestSplitReplayIsExact replays a log with every kind of rule in two parts
// at many split points, with SQLite between them: the detections are those
// of one replay.
func TestSplitReplayIsExact(t *testing.T) {
	checkSplitReplays(t, func(cfg *config.Config, data []byte, cut int) []Detection {
		got, _ := replayInParts(t, cfg, data[:cut], data[cut:])
		return got
	})
}

// TestSplitReplayAsTheDaemonStartsIsExact is TestSplitReplayIsExact with
// the second part started as the daemon starts: the blocks loaded first,
// the clock moved on to the wall's (here: the next line's time, when the
// restart came) with the blocks due lifted, and only then the windows
// read, and restored as events need them.
func TestSplitReplayAsTheDaemonStartsIsExact(t *testing.T) {
	checkSplitReplays(t, func(cfg *config.Config, data []byte, cut int) []Detection {
		dir := t.TempDir()
		log := filepath.Join(dir, "mail.log")
		os.WriteFile(log, data[:cut], 0o644)
		store, err := sqlite.Open(filepath.Join(dir, "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := replay(t, cfg, store, nil, log)
		f, _ := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
		f.Write(data[cut:])
		f.Close()
		restart, err := time.Parse(time.RFC3339Nano, strings.Fields(string(data[cut : cut+64]))[0])
		if err != nil {
			t.Fatal(err)
		}
		p, err := config.NewPipeline(cfg, Options{Logger: slog.New(slog.DiscardHandler), Store: store, DeferWindows: true, CommitEvery: 100,
			OnDetection: func(d Detection) { got = append(got, d) }})
		if err != nil {
			t.Fatal(err)
		}
		p.Advance(restart)
		if err := p.RestoreWindows(); err != nil {
			t.Fatal(err)
		}
		src, err := input.OpenSource(input.Spec{Path: log, Format: "auto"}, input.Options{Location: time.UTC, Now: func() time.Time { return ref }, Positions: p.Positions()})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Process(input.NewMerger([]*input.Source{src})); err != nil {
			t.Fatal(err)
		}
		src.Close()
		store.Close()
		return got
	})
}

// checkSplitReplays replays a log with every kind of rule cut in two at
// 11 points, each with split, and checks it detects what one replay of
// the whole log does.
func checkSplitReplays(t *testing.T, split func(cfg *config.Config, data []byte, cut int) []Detection) {
	t.Helper()
	cfg := mustConfig(t, `
ignore: [127.0.0.0/8]
rules:
  - {name: count, on: [accepted], key: sender, limit: 30, per: 1m, block: 10m}
  - {name: release, on: [accepted], key: client_ip, limit: 60, per: 1m, block: 0, release: below}
  - {name: forgive, on: [accepted], key: client_ip, limit: 20, per: 1h, block: 30s, forgive: 15}
  - {name: bytes, on: [accepted], key: sender_domain, measure: bytes, limit: 200000, per: 1m, escalate: {factor: 2, max: 1d}, block: 5m}
  - {name: burst, on: [accepted], key: sasl_user, measure: burst, soft: 0.2, hard: 0.35, expire: 10m}
  - {name: two, on: [accepted], key: client_net, windows: [{limit: 40, per: 1m}, {limit: 150, per: 1h}]}
  - {name: both, on: [accepted], key: client_net, prefix: {ipv4: 16, ipv6: 32}, limit: 50, per: 1m, block: 20m, forgive: 10, release: below}
`)
	full := generate(t, "postfix", 30000, 21)
	data, _ := os.ReadFile(full)
	want, _ := replay(t, cfg, nil, nil, full)
	if len(want) < 10 {
		t.Fatalf("only %d detections in the whole replay", len(want))
	}
	for k := 1; k < 12; k++ {
		got := split(cfg, data, cutAtLine(data, len(data)*k/12))
		if g, w := summaryWithValues(got), summaryWithValues(want); !slices.Equal(g, w) {
			t.Errorf("cut %d/12: %d detections, want %d\nfirst difference: %s", k, len(got), len(want), firstDiff(g, w))
		}
	}
}

func summaryWithValues(ds []Detection) []string {
	var out []string
	for _, d := range ds {
		until := ""
		if d.Until != nil {
			until = d.Until.String()
		}
		out = append(out, fmt.Sprintf("%s %s %s %s %g %g %s %s", d.Event, d.Rule, d.Key, d.Time, d.Value, d.Limit, until, d.Reason))
	}
	return out
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("#%d\n got %s\nwant %s", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(a), len(b))
}

// TestDistinct: a stolen SASL account forging a new sender per message is
// blocked by the distinct senders it used, while a person with two
// addresses is not; a botnet of one message per address is blocked as a
// network, while one host flooding from its /24 is not.
func TestDistinct(t *testing.T) {
	cfg := mustConfig(t, `
rules:
  - {name: acct, on: [accepted], key: sasl_user, measure: distinct, of: sender, limit: 5, per: 10m}
  - {name: botnet, on: [accepted], key: client_net, measure: distinct, of: client_ip, limit: 10, per: 10m}
`)
	var ms []msg
	for i := range 8 { // stolen: a new sender each message, from two addresses
		ms = append(ms, msg{at: time.Duration(i) * 20 * time.Second, sender: fmt.Sprintf("ceo%d@forged%d.example", i, i),
			ip: fmt.Sprintf("198.51.100.%d", 10+i%2), sasl: "alice"})
	}
	for i := range 40 { // a person: two addresses, many messages
		ms = append(ms, msg{at: time.Duration(i) * 10 * time.Second, sender: []string{"bob@example.org", "bob@example.net"}[i%2],
			ip: "192.0.2.20", sasl: "bob"})
	}
	for i := range 12 { // a botnet: one message per address of 203.0.113.0/24
		ms = append(ms, msg{at: time.Duration(i) * 30 * time.Second, sender: fmt.Sprintf("x%d@spam.example", i), ip: fmt.Sprintf("203.0.113.%d", 1+i)})
	}
	for i := range 200 { // one host flooding: one address of its /24
		ms = append(ms, msg{at: time.Duration(i) * time.Second, sender: "news@big.example", ip: "192.0.2.99"})
	}
	slices.SortStableFunc(ms, func(a, b msg) int { return cmp.Compare(a.at, b.at) })
	got, _ := replay(t, cfg, nil, nil, writeLog(t, postfixLines(ms...)...))
	want := map[string]bool{"acct alice": true, "botnet 203.0.113.0/24": true}
	if keys := blockedKeys(got); !mapsEqual(keys, want) {
		t.Errorf("blocked %v, want %v", sortedKeys(keys), sortedKeys(want))
	}
	for _, d := range got {
		if d.Event == "block" && d.Rule == "acct" && (d.Value != 6 || d.Limit != 5) {
			t.Errorf("acct: value %g limit %g, want 6 and 5: the sixth sender", d.Value, d.Limit)
		}
	}
}

// TestAdapt: a sender's limit follows its own normal — what it sent
// unblocked before, in the days over — so a sender that grew sends on
// while a new one sending as much is blocked, and the grown one is blocked
// too past factor times its normal. Replayed in two parts with the state
// saved between, it decides the same.
func TestAdapt(t *testing.T) {
	cfg := mustConfig(t, `
rules:
  - {name: s, on: [accepted], key: sender, limit: 10, per: 1m, block: 10m, adapt: {history: 8d, factor: 3, max: 10}}
`)
	var ms []msg
	minute := func(day, m int) time.Duration { return time.Duration(day)*24*time.Hour + time.Duration(m)*time.Minute }
	for m := range 60 { // day 0: 8 a minute, under the limit
		for i := range 8 {
			ms = append(ms, msg{at: minute(0, m) + time.Duration(i)*7*time.Second, sender: "big@example.org", ip: "192.0.2.1"})
		}
	}
	for m := range 10 { // day 1: 20 a minute, under 3 × 8 = 24
		for i := range 20 {
			ms = append(ms, msg{at: minute(1, m) + time.Duration(i)*3*time.Second, sender: "big@example.org", ip: "192.0.2.1"})
			ms = append(ms, msg{at: minute(1, m) + time.Duration(i)*3*time.Second + time.Second, sender: "new@example.net", ip: "192.0.2.2"})
		}
	}
	for i := range 30 { // day 1, later: 30 in a minute, over 24
		ms = append(ms, msg{at: minute(1, 30) + time.Duration(i)*2*time.Second, sender: "big@example.org", ip: "192.0.2.1"})
	}
	slices.SortStableFunc(ms, func(a, b msg) int { return cmp.Compare(a.at, b.at) })
	lines := postfixLines(ms...)
	got, _ := replay(t, cfg, nil, nil, writeLog(t, lines...))
	var blocks []string
	for _, d := range got {
		if d.Event == "block" {
			blocks = append(blocks, fmt.Sprintf("%s value=%g limit=%g effective=%g", d.Key, d.Value, d.Limit, d.EffectiveLimit))
		}
	}
	want := []string{"new@example.net value=11 limit=10 effective=10", "big@example.org value=25 limit=10 effective=24"}
	if !slices.Equal(blocks, want) {
		t.Errorf("blocks %v, want %v", blocks, want)
	}
	half := len(lines) / 2
	parts, _ := replayInParts(t, cfg, joinLines(lines[:half]), joinLines(lines[half:]))
	if !slices.Equal(summary(parts), summary(got)) {
		t.Errorf("in two parts:\n%v\nin one:\n%v", summary(parts), summary(got))
	}
}

// TestRulesSharingAWindowBlockEachAtItsOwnLimit: three rules count one
// sender's messages over one minute and share one window; each blocks at
// its own limit, with its own value, and the window is saved once. A rule
// that releases keeps a window of its own, and decides the same.
func TestRulesSharingAWindowBlockEachAtItsOwnLimit(t *testing.T) {
	cfg := mustConfig(t, `rules:
  - {name: low, on: [accepted], key: sender, limit: 2, per: 1m, block: 1h}
  - {name: high, on: [accepted], key: sender, limit: 5, per: 1m, block: 1h}
  - {name: mid, on: [accepted], key: sender, limit: 3, per: 1m, block: 1h}
  - {name: own, on: [accepted], key: sender, limit: 3, per: 1m, block: 1h, release: below}
  - {name: other-kind, on: [rejected], key: sender, limit: 1, per: 1m, block: 1h}
`)
	m := msg{sender: "a@example.org", ip: "192.0.2.9"}
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	got, p := replay(t, cfg, store, nil, writeLog(t, postfixLines(every(7, 0, time.Second, m)...)...))
	checkSummary(t, got,
		"block low a@example.org 2s",
		"block mid a@example.org 3s",
		"block own a@example.org 3s",
		"block high a@example.org 5s",
	)
	values := map[string]float64{}
	for _, d := range got {
		values[d.Rule] = d.Value
	}
	if want := map[string]float64{"low": 3, "mid": 4, "own": 4, "high": 6}; !maps.Equal(values, want) {
		t.Errorf("values %v, want %v", values, want)
	}
	var names []string
	store.Windows(func(w *state.Window) { names = append(names, w.Rule) })
	slices.Sort(names)
	if want := []string{"low/0", "own/0"}; !slices.Equal(names, want) {
		t.Errorf("saved windows %v, want %v (one for the three sharing rules)", names, want)
	}
	if n := p.Keys(); n != 2 {
		t.Errorf("keys in memory %d, want 2", n)
	}
}

// TestMaxKeysForgetsTheLeastRecentlySeen: 20,000 senders of one message
// each against a cap of 1,000 keys. The keys held stay under the cap (but
// for what one batch adds) and never go under nine tenths of it once
// there — though 1,200 senders share a minute, the window's grid — the
// evictions are counted, and the keys that matter are kept: a blocked one
// (its block holds, and it is not counted again from zero), and one over
// half its limit, which crosses it later.
func TestMaxKeysForgetsTheLeastRecentlySeen(t *testing.T) {
	cfg := mustConfig(t, "max_keys: 1000\nrules:\n  - {name: s, on: [accepted], key: sender, limit: 5, per: 1h, block: 2h}\n")
	var ms []msg
	ms = append(ms, every(6, 0, time.Second, msg{sender: "bomber@example.org", ip: "192.0.2.1"})...) // blocked at the 6th
	ms = append(ms, every(3, 10*time.Second, time.Second, msg{sender: "near@example.org", ip: "192.0.2.2"})...)
	for i := range 20000 {
		ms = append(ms, msg{at: 20*time.Second + time.Duration(i)*50*time.Millisecond, sender: fmt.Sprintf("s%d@example.net", i), ip: "198.51.100.1"})
	}
	later := 20*time.Second + 20000*50*time.Millisecond
	ms = append(ms, every(3, later, time.Second, msg{sender: "near@example.org", ip: "192.0.2.2"})...) // its 6th crosses
	ms = append(ms, msg{at: later + 5*time.Second, sender: "bomber@example.org", ip: "192.0.2.1"})
	peak, low := 0, math.MaxInt
	got, p := replayWatching(t, cfg, writeLog(t, postfixLines(ms...)...), func(p *Pipeline) {
		peak = max(peak, p.Keys())
		if p.Stats.Evicted > 0 {
			low = min(low, p.Keys())
		}
	})
	checkSummary(t, got,
		"block s bomber@example.org 5s",
		"block s near@example.org "+(later+2*time.Second).String(),
	)
	if peak > 1000+100 { // one batch of the replay (100 events) past the cap at most
		t.Errorf("%d keys held at most, cap 1,000", peak)
	}
	if low < 900 {
		t.Errorf("%d keys held once over the cap, want nine tenths of it, 900, at least", low)
	}
	if p.Stats.Evicted < 20000-1000-100 {
		t.Errorf("%d keys evicted, want the 20,000 senders' but what the cap holds", p.Stats.Evicted)
	}
}

// replayWatching is replay without a store that calls watch after every
// event, committing every 100 events as replay does.
func replayWatching(t *testing.T, cfg *config.Config, log string, watch func(*Pipeline)) ([]Detection, *Pipeline) {
	t.Helper()
	var got []Detection
	p, err := config.NewPipeline(cfg, Options{Logger: slog.New(slog.DiscardHandler), OnDetection: func(d Detection) { got = append(got, d) }, CommitEvery: 100})
	if err != nil {
		t.Fatal(err)
	}
	src, err := input.OpenSource(input.Spec{Path: log, Format: "auto"}, input.Options{Location: time.UTC, Now: func() time.Time { return ref }})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	m := input.NewMerger([]*input.Source{src})
	for n := 1; ; n++ {
		e, _, done := m.Next()
		if done {
			break
		}
		if e == nil {
			<-m.Wake()
			continue
		}
		p.Event(e)
		watch(p)
		if n%100 == 0 {
			if err := p.Commit(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	return got, p
}
