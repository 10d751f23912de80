package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	db := replayDB(t, "", filepath.Join("..", "..", "samples", "postfix.log"), filepath.Join("..", "..", "samples", "qmail.log"))
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
	if blocks, _ := r["blocks"].([]any); len(blocks) != 5 { // sender, client, stolen account by distinct senders and by count, sender
		t.Errorf("%d blocks, want the samples' 5", len(blocks))
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
		!strings.Contains(out, "the 11 events of the window") || strings.Count(out, log+":") != 12 {
		t.Errorf("explain:\n%s", out)
	}
	if code, _, _ := bombwatch(t, "explain", "192.0.2.1", "--db", db); code != 1 {
		t.Errorf("explain of a key never blocked: exit %d", code)
	}
}
