package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/internal/netns"
	"github.com/bombwatch/bombwatch/report"
)

var update = flag.Bool("update", false, "rewrite the golden files of the report tests")

// replayDB replays logs into a new state database and returns its path.
func replayDB(t *testing.T, cfg string, logs ...string) string {
	t.Helper()
	db := filepath.Join(t.TempDir(), "state.db")
	args := []string{"replay", "--db", db}
	if cfg != "" {
		args = append(args, "-c", cfg)
	}
	if code, _, errOut := bombwatch(t, append(args, logs...)...); code != 0 {
		t.Fatalf("replay: %s", errOut)
	}
	return db
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		os.MkdirAll("testdata", 0o755)
		os.WriteFile(path, []byte(got), 0o644)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestReportGolden -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file; got:\n%s", name, got)
	}
}

// TestReportGolden: every format of the report of a fixed replay (the
// Postfix and qmail samples, whose stamps carry their year).
func TestReportGolden(t *testing.T) {
	// qmail's lines name no host: its blocks' is host:, not the machine's.
	cfg := filepath.Join(t.TempDir(), "bombwatch.yaml")
	if err := os.WriteFile(cfg, []byte("host: mxq.example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	db := replayDB(t, cfg, filepath.Join("..", "..", "samples", "postfix.log"), filepath.Join("..", "..", "samples", "qmail.log"))
	for _, f := range []struct {
		name string
		args []string
	}{
		{"report.txt", []string{"--format", "text", "--what-if", "sender 20/1m"}},
		{"report.json", []string{"--format", "json", "--what-if", "client_ip 30/2m"}},
		{"report.html", []string{"--format", "html", "--what-if", "sender 20/1m"}},
		{"report-blocks.csv", []string{"--format", "csv", "--table", "blocks"}},
		{"report-top.csv", []string{"--format", "csv", "--table", "top", "--top", "3"}},
		{"report-top-bytes.csv", []string{"--format", "csv", "--table", "top", "--top", "3", "--by", "bytes"}},
		{"report-advisor.csv", []string{"--format", "csv", "--table", "advisor"}},
	} {
		code, out, errOut := bombwatch(t, append([]string{"report", "--db", db, "--since", "2d"}, f.args...)...)
		if code != 0 {
			t.Fatalf("%s: %s", f.name, errOut)
		}
		golden(t, f.name, out)
	}
	// The JSON has the interface's fields.
	_, out, _ := bombwatch(t, "report", "--db", db, "--format", "json", "--since", "2d")
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"since", "until", "totals", "top", "blocks"} {
		if _, ok := r[k]; !ok {
			t.Errorf("no %q in the JSON report", k)
		}
	}
	// The Postfix sample's 10 bombs (the account flood by two rules) and
	// the qmail sample's 4.
	if blocks, _ := r["blocks"].([]any); len(blocks) != 15 {
		t.Errorf("%d blocks, want the samples' 15", len(blocks))
	}
	for _, line := range strings.Split(string(must(os.ReadFile(filepath.Join("testdata", "report.txt")))), "\n") {
		if n := len([]rune(line)); n > 100 {
			t.Errorf("a text line of %d columns: %q", n, line)
		}
	}
}

func must(b []byte, _ error) []byte { return b }

// hostileLog writes a bomb whose sender is HTML, and a session timed lost
// connections of known lengths.
func hostileLog(t *testing.T) string {
	t.Helper()
	base := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	var b strings.Builder
	ts := func(d time.Duration) string { return base.Add(d).Format(time.RFC3339Nano) }
	for i := range 35 {
		fmt.Fprintf(&b, "%s mx postfix/smtpd[1]: HOST%05d: client=x.example[203.0.113.9]\n", ts(time.Duration(i)*time.Second), i)
		fmt.Fprintf(&b, "%s mx postfix/qmgr[2]: HOST%05d: from=<<script>alert(1)</script>@x.example>, size=10, nrcpt=1 (queue active)\n", ts(time.Duration(i)*time.Second), i)
	}
	for i, stay := range []int{5, 15, 15, 40, 70} {
		pid := 100 + i
		fmt.Fprintf(&b, "%s mx postfix/smtpd[%d]: connect from unknown[198.51.100.%d]\n", ts(time.Minute), pid, i+1)
		fmt.Fprintf(&b, "%s mx postfix/smtpd[%d]: lost connection after CONNECT from unknown[198.51.100.%d]\n", ts(time.Minute+time.Duration(stay)*time.Second), pid, i+1)
	}
	fmt.Fprintf(&b, "%s mx postfix/smtpd[9]: improper command pipelining after DATA from unknown[198.51.100.9]:\n", ts(3*time.Minute))
	p := filepath.Join(t.TempDir(), "mail.log")
	os.WriteFile(p, []byte(b.String()), 0o644)
	return p
}

// TestReportEscapesAndLost: what a log wrote appears only escaped in the
// HTML, and the lost-connection histogram counts what it should.
func TestReportEscapesAndLost(t *testing.T) {
	db := replayDB(t, "", hostileLog(t))
	code, out, errOut := bombwatch(t, "report", "--db", db, "--format", "html", "--since", "1d")
	if code != 0 {
		t.Fatal(errOut)
	}
	if strings.Contains(out, "<script") || !strings.Contains(out, "&lt;script&gt;alert(1)&lt;/script&gt;@x.example") {
		t.Errorf("the sender is not escaped in the HTML:\n%s", out)
	}
	if strings.Contains(out, "http://") || strings.Contains(out, "https://") || strings.Contains(out, "src=") {
		t.Error("the page fetches something")
	}
	_, out, _ = bombwatch(t, "report", "--db", db, "--format", "json", "--since", "1d")
	var r report.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	l := r.Lost
	if l.Total != 5 || l.Timed != 5 || l.Pipelining != 1 || l.Within35s != 0.6 || l.Within65s != 0.8 {
		t.Errorf("lost connections %+v", l)
	}
	if len(l.Buckets) != 4 || l.Buckets[1].From != 10 || l.Buckets[1].Count != 2 || l.Buckets[3].Cumulative != 1 {
		t.Errorf("buckets %+v", l.Buckets)
	}
	_, out, _ = bombwatch(t, "report", "--db", db, "--since", "1d")
	// Text has nothing to escape but what moves a terminal: it shows the
	// sender as it is.
	if !strings.Contains(out, "<script>alert(1)</script>@x.example") {
		t.Errorf("text report:\n%s", out)
	}
}

// TestReportInChromium renders the HTML report in headless Chromium: it
// loads without errors and shows its tables.
func TestReportInChromium(t *testing.T) {
	var browser string
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
		}
	}
	if browser == "" {
		netns.SkipOrFail(t, "chromium is not installed (apt-get install chromium)")
	}
	db := replayDB(t, "", hostileLog(t))
	page := filepath.Join(t.TempDir(), "report.html")
	if code, _, errOut := bombwatch(t, "report", "--db", db, "--format", "html", "--since", "1d", "-o", page); code != 0 {
		t.Fatal(errOut)
	}
	shot := filepath.Join(t.TempDir(), "shot.png")
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--window-size=412,900"}
	cmd := exec.Command(browser, append(args, "--dump-dom", "file://"+page)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"<h1>bombwatch report</h1>", "Lost connections", "&lt;script&gt;alert(1)&lt;/script&gt;@x.example", "<svg"} {
		if !strings.Contains(string(dom), want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}
	if err := exec.Command(browser, append(args, "--screenshot="+shot, "file://"+page)...).Run(); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if st, err := os.Stat(shot); err != nil || st.Size() < 1000 {
		t.Errorf("no screenshot: %v", err)
	}
}

// TestExplain names the rule, the arithmetic and the log lines.
func TestExplain(t *testing.T) {
	log := hostileLog(t)
	cfg := writeFile(t, "c.yaml", "rules:\n  - {name: ten, on: [accepted], key: client_ip, limit: 10, per: 1m}\n")
	db := replayDB(t, cfg, log)
	code, out, errOut := bombwatch(t, "explain", "203.0.113.9", "--db", db, "-c", cfg)
	if code != 0 {
		t.Fatal(errOut)
	}
	if !strings.Contains(out, "by rule ten: client_ip 203.0.113.9") || !strings.Contains(out, "11 > 10 within 1m0s") ||
		!strings.Contains(out, "what the rule counted, kept with the block (11 entries)") || strings.Count(out, log+":") != 12 {
		t.Errorf("explain:\n%s", out)
	}
	if code, _, _ := bombwatch(t, "explain", "192.0.2.1", "--db", db); code != 1 {
		t.Errorf("explain of a key never blocked: exit %d", code)
	}
}

// TestExplainShowsWhatTheRuleCounted: the evidence is what the rule
// counted, kept with the block — a rule on connects lists the connects,
// not the client's accepted mail; a strip_tag rule lists the tagged
// senders' messages — and still names the lines once the log is gone.
func TestExplainShowsWhatTheRuleCounted(t *testing.T) {
	base := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	var b strings.Builder
	for i := range 6 {
		ts := base.Add(time.Duration(i) * 5 * time.Second).Format(time.RFC3339)
		fmt.Fprintf(&b, "%s mx postfix/smtpd[%d]: connect from c.example[192.0.2.7]\n", ts, 10+i)
		fmt.Fprintf(&b, "%s mx postfix/smtpd[%d]: TAG%05d: client=c.example[192.0.2.7]\n", ts, 10+i, i)
		fmt.Fprintf(&b, "%s mx postfix/qmgr[2]: TAG%05d: from=<joe+%d@example.org>, size=10, nrcpt=1 (queue active)\n", ts, i, i)
	}
	log := writeFile(t, "mail.log", b.String())
	cfg := writeFile(t, "c.yaml", `rules:
  - {name: connects, on: [connect], key: client_ip, limit: 5, per: 1m}
  - {name: tagged, on: [accepted], key: sender, strip_tag: true, limit: 5, per: 1m}
`)
	db := replayDB(t, cfg, log)
	code, out, errOut := bombwatch(t, "explain", "192.0.2.7", "--db", db, "-c", cfg)
	if code != 0 {
		t.Fatal(errOut)
	}
	if !strings.Contains(out, "(6 entries)") || strings.Count(out, "connect from c.example[192.0.2.7]") != 6 || strings.Contains(out, "client=") {
		t.Errorf("explain of the connects rule lists what it did not count:\n%s", out)
	}
	code, out, errOut = bombwatch(t, "explain", "joe@example.org", "--db", db, "-c", cfg)
	if code != 0 {
		t.Fatal(errOut)
	}
	if !strings.Contains(out, "by rule tagged") || !strings.Contains(out, "(6 entries)") || strings.Count(out, "from=<joe+") != 6 {
		t.Errorf("explain of a strip_tag block:\n%s", out)
	}
	os.Remove(log)
	code, out, _ = bombwatch(t, "explain", "joe@example.org", "--db", db, "-c", cfg)
	if code != 0 || strings.Count(out, log+":") != 7 || !strings.Contains(out, "(the log no longer holds it)") {
		t.Errorf("explain once the log is gone:\n%s", out)
	}
}

// TestExplainAdaptedLimit: a block of a key whose limit adapt raised says
// the rule's limit, the key's, and where it came from.
func TestExplainAdaptedLimit(t *testing.T) {
	var b strings.Builder
	msg := func(at time.Time, i int) {
		ts := at.Format(time.RFC3339)
		fmt.Fprintf(&b, "%s mx postfix/smtpd[1]: AD%06d: client=c.example[192.0.2.8]\n", ts, i)
		fmt.Fprintf(&b, "%s mx postfix/qmgr[2]: AD%06d: from=<news@lists.example>, size=10, nrcpt=1 (queue active)\n", ts, i)
	}
	day := time.Date(2026, 11, 19, 10, 0, 0, 0, time.UTC)
	for i := range 4 { // yesterday: 4 in a minute, under the limit of 5
		msg(day.Add(time.Duration(i)*10*time.Second), i)
	}
	for i := range 13 { // today: 13 in a minute, over 3 × 4
		msg(day.Add(24*time.Hour+time.Duration(i)*4*time.Second), 100+i)
	}
	log := writeFile(t, "mail.log", b.String())
	cfg := writeFile(t, "c.yaml", "rules:\n  - {name: lists, on: [accepted], key: sender, limit: 5, per: 1m, adapt: {history: 2d, factor: 3, max: 10}}\n")
	db := replayDB(t, cfg, log)
	code, out, errOut := bombwatch(t, "explain", "news@lists.example", "--db", db, "-c", cfg)
	if code != 0 {
		t.Fatal(errOut)
	}
	if !strings.Contains(out, "13 > 12 within 1m0s") ||
		!strings.Contains(out, "the rule's limit is 5; adapt raised this key's to 12: 3 times the most it reached in 1m0s, unblocked, over the last 2d (4)") {
		t.Errorf("explain:\n%s", out)
	}
}

// TestExplainBurst: a burst block is said to be FML's score, with its
// arithmetic, term by term, adding up to the score.
func TestExplainBurst(t *testing.T) {
	base := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	var b strings.Builder
	for i, gap := range []time.Duration{0, 2 * time.Second, 4 * time.Second, 5 * time.Second} {
		ts := base.Add(gap).Format(time.RFC3339)
		fmt.Fprintf(&b, "%s mx postfix/smtpd[1]: BU%06d: client=c.example[192.0.2.9]\n", ts, i)
		fmt.Fprintf(&b, "%s mx postfix/qmgr[2]: BU%06d: from=<fast@burst.example>, size=10, nrcpt=1 (queue active)\n", ts, i)
	}
	log := writeFile(t, "mail.log", b.String())
	cfg := writeFile(t, "c.yaml", "rules:\n  - {name: fml, on: [accepted], key: sender, measure: burst, soft: 0.5, hard: 1.5, expire: 1h, block: 1h}\n")
	db := replayDB(t, cfg, log)
	code, out, errOut := bombwatch(t, "explain", "fast@burst.example", "--db", db, "-c", cfg)
	if code != 0 {
		t.Fatal(errOut)
	}
	// At 10:00:05: 1/5 + 1/3 + 1/1 = 1.5333 > hard 1.5.
	for _, want := range []string{"burst score 1.5333", "> 1.5", "FML's burst score", "soft 0.5, hard 1.5",
		"+ 1/max(5s, 1s) = 0.2000", "+ 1/max(3s, 1s) = 0.3333", "+ 1/max(1s, 1s) = 1.0000", "= 1.5333"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
}

// TestEvidenceSurvivesARestart: the events a block counted before a
// restart (another replay of the same state) are in its evidence, named by
// the file and line they came from.
func TestEvidenceSurvivesARestart(t *testing.T) {
	base := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	part := func(from, to int) string {
		var b strings.Builder
		for i := from; i < to; i++ {
			ts := base.Add(time.Duration(i) * time.Second).Format(time.RFC3339)
			fmt.Fprintf(&b, "%s mx postfix/smtpd[1]: EV%06d: client=c.example[192.0.2.10]\n", ts, i)
			fmt.Fprintf(&b, "%s mx postfix/qmgr[2]: EV%06d: from=<split@example.org>, size=10, nrcpt=1 (queue active)\n", ts, i)
		}
		return b.String()
	}
	first, second := writeFile(t, "one.log", part(0, 4)), writeFile(t, "two.log", part(4, 7))
	cfg := writeFile(t, "c.yaml", "rules:\n  - {name: five, on: [accepted], key: sender, limit: 5, per: 1m}\n")
	db := replayDB(t, cfg, first)
	if code, _, errOut := bombwatch(t, "replay", "-c", cfg, "--db", db, second); code != 0 {
		t.Fatal(errOut)
	}
	code, out, errOut := bombwatch(t, "bans", "list", "--json", "--db", db, "-c", cfg)
	if code != 0 {
		t.Fatal(errOut)
	}
	var bans []struct {
		Rule     string
		Evidence []struct {
			File string
			Line int64
			Time time.Time
		}
	}
	if err := json.Unmarshal([]byte(out), &bans); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range bans {
		if b.Rule == "five" {
			for _, e := range b.Evidence {
				got = append(got, fmt.Sprintf("%s:%d %s", filepath.Base(e.File), e.Line, e.Time.Format("15:04:05")))
			}
		}
	}
	want := []string{"one.log:2 10:00:00", "one.log:4 10:00:01", "one.log:6 10:00:02", "one.log:8 10:00:03",
		"two.log:2 10:00:04", "two.log:4 10:00:05"}
	if !slices.Equal(got, want) {
		t.Errorf("evidence %q, want %q", got, want)
	}
}

// TestMembersSurviveARestart: a network blocked after a restart is
// enforced on the addresses that sent before the restart too, as one
// replay of both logs enforces it.
func TestMembersSurviveARestart(t *testing.T) {
	base := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	part := func(from, to int) string {
		var b strings.Builder
		for i := from; i < to; i++ {
			ts := base.Add(time.Duration(i) * time.Second).Format(time.RFC3339)
			fmt.Fprintf(&b, "%s mx postfix/smtpd[1]: MB%06d: client=unknown[203.0.113.%d]\n", ts, i, 10+i)
			fmt.Fprintf(&b, "%s mx postfix/qmgr[2]: MB%06d: from=<offer%d@deals.example>, size=10, nrcpt=1 (queue active)\n", ts, i, i)
		}
		return b.String()
	}
	first, second := writeFile(t, "one.log", part(0, 5)), writeFile(t, "two.log", part(5, 12))
	cfg := writeFile(t, "c.yaml", "rules:\n  - {name: net, on: [accepted], key: client_net, measure: distinct, of: client_ip, limit: 10, per: 1m}\n")
	members := func(db string) []string {
		code, out, errOut := bombwatch(t, "bans", "list", "--json", "--db", db, "-c", cfg)
		if code != 0 {
			t.Fatal(errOut)
		}
		var bans []struct {
			Rule, Key string
			Members   []string
		}
		if err := json.Unmarshal([]byte(out), &bans); err != nil {
			t.Fatal(err)
		}
		for _, b := range bans {
			if b.Rule == "net" {
				slices.Sort(b.Members)
				return b.Members
			}
		}
		return nil
	}
	db := replayDB(t, cfg, first)
	if code, _, errOut := bombwatch(t, "replay", "-c", cfg, "--db", db, second); code != 0 {
		t.Fatal(errOut)
	}
	want := members(replayDB(t, cfg, first, second))
	if got := members(db); len(want) != 12 || !slices.Equal(got, want) {
		t.Errorf("members after a restart %q, want %q (one replay)", got, want)
	}
}
