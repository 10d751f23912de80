package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/internal/corpus"
	"github.com/bombwatch/bombwatch/internal/loggen"
)

// bombwatch runs the command in-process and returns its exit status and
// output.
func bombwatch(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// The samples and how they were generated: `make samples` runs the same.
var sampleRecipes = []struct {
	file   string
	format string
	lines  int
	seed   uint64
	start  string
}{
	{"postfix.log", "postfix", 6000, 1, "2026-11-20T08:00:00Z"},
	{"sendmail.log", "sendmail", 5000, 2, "2026-11-20T10:00:00Z"},
	{"qmail.log", "qmail", 4000, 3, "2026-11-20T12:00:00Z"},
}

// TestSamplesAreGenerated: the samples are exactly what the generator
// writes, so that they can be remade and the benchmarks see the same traffic.
func TestSamplesAreGenerated(t *testing.T) {
	for _, r := range sampleRecipes {
		code, out, errOut := bombwatch(t, "generate", "--format", r.format, "--lines", fmtInt(r.lines), "--seed", fmtInt(int(r.seed)), "--start", r.start)
		if code != 0 {
			t.Fatalf("generate: %d %s", code, errOut)
		}
		want, err := os.ReadFile(filepath.Join("..", "..", "samples", r.file))
		if err != nil {
			t.Fatal(err)
		}
		if out != string(want) {
			t.Errorf("samples/%s differs from the generator's output: run make samples", r.file)
		}
	}
}

func fmtInt(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestDemo is `make demo`: the samples' bombs are blocked, and nothing else.
func TestDemo(t *testing.T) {
	var want []string
	for _, r := range sampleRecipes {
		start, _ := time.Parse(time.RFC3339, r.start)
		bombs, err := loggen.Write(&bytes.Buffer{}, loggen.Options{Format: r.format, Lines: r.lines, Seed: r.seed, Start: start})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bombs {
			for _, rule := range b.Rules {
				want = append(want, rule+" "+b.KeyType+" "+b.Key)
			}
		}
	}
	samples := filepath.Join("..", "..", "samples")
	code, out, errOut := bombwatch(t, "replay", "--json", filepath.Join(samples, "postfix.log"), filepath.Join(samples, "sendmail.log"), filepath.Join(samples, "qmail.log"))
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, errOut)
	}
	var got []string
	for _, d := range decodeLines(t, out) {
		if d["event"] == "block" {
			got = append(got, d["rule"].(string)+" "+d["key_type"].(string)+" "+d["key"].(string))
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("blocked\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(errOut, fmt.Sprintf("blocks: %d started", len(want))) {
		t.Errorf("summary: %s", errOut)
	}
}

func decodeLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var ds []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var d map[string]any
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		ds = append(ds, d)
	}
	return ds
}

func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReplayJSONFields checks each detection field of the public interface.
func TestReplayJSONFields(t *testing.T) {
	var log strings.Builder
	for i := range 12 {
		ts := time.Date(2026, 11, 20, 10, 0, i, 0, time.UTC).Format(time.RFC3339)
		qid := "ABCDE" + fmtInt(10+i)
		log.WriteString(ts + " mx postfix/smtpd[1]: " + qid + ": client=c.example[198.51.100.4]\n")
		log.WriteString(ts + " mx postfix/qmgr[2]: " + qid + ": from=<bomb@Example.COM>, size=10, nrcpt=1 (queue active)\n")
	}
	logPath := writeFile(t, "mail.log", log.String())
	cfg := writeFile(t, "c.yaml", "rules:\n  - {name: ten, on: [accepted], key: sender, limit: 10, per: 1m, block: 1h}\n")
	db := filepath.Join(t.TempDir(), "state.db")
	code, out, errOut := bombwatch(t, "replay", "-c", cfg, "--db", db, logPath, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	ds := decodeLines(t, out)
	if len(ds) != 1 {
		t.Fatalf("detections: %s", out)
	}
	d := ds[0]
	want := map[string]any{
		"event": "block", "time": "2026-11-20T10:00:10Z", "rule": "ten", "key_type": "sender", "key": "bomb@example.com",
		"value": 11.0, "limit": 10.0, "window": "1m0s", "until": "2026-11-20T11:00:10Z", "executed": true,
	}
	for k, v := range want {
		if d[k] != v {
			t.Errorf("%s = %#v, want %#v", k, d[k], v)
		}
	}
	if acts, _ := d["actions"].([]any); len(acts) != 1 || acts[0] != "log" {
		t.Errorf("actions = %#v", d["actions"])
	}
	// The same replay again resumes after what it read: nothing new.
	code, out, errOut = bombwatch(t, "replay", "-c", cfg, "--db", db, logPath, "--json")
	if code != 0 || out != "" || !strings.Contains(errOut, "resumed") {
		t.Errorf("second replay: exit %d, out %q, err %s", code, out, errOut)
	}
}

func TestReplayErrors(t *testing.T) {
	good := writeFile(t, "mail.log", "2026-11-20T10:00:00Z mx postfix/qmgr[2]: ABCDEF1: from=<a@b>, size=10, nrcpt=1 (queue active)\n")
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"missing file", []string{"replay", good, "/nonexistent/mail.log"}, 1, "/nonexistent/mail.log: no such file"},
		{"no log", []string{"replay"}, 2, "no log given"},
		{"bad flag", []string{"replay", "--nope", good}, 2, "flag provided but not defined"},
		{"bad format", []string{"replay", "--format", "exim", good}, 2, `unknown --format "exim"`},
		{"bad config", []string{"replay", "-c", writeFile(t, "c.yaml", "rules: 3\n"), good}, 2, "c.yaml:1: rules: must be a list"},
		{"missing config", []string{"replay", "-c", "/nonexistent.yaml", good}, 2, "/nonexistent.yaml"},
		{"binary file", []string{"replay", writeFile(t, "bin", "\x00\x01\x02\xff\n\x7fELF")}, 1, "cannot tell the log format"},
		{"empty file", []string{"replay", writeFile(t, "empty", "")}, 0, "(no lines)"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := bombwatch(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.msg) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, tt.code, tt.msg)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	code, out, _ := bombwatch(t, "check")
	if code != 0 || !strings.Contains(out, "sender-flood") {
		t.Errorf("check of the default: exit %d\n%s", code, out)
	}
	code, out, errOut := bombwatch(t, "check", "-c", filepath.Join("..", "..", "samples", "bombwatch.yaml"))
	if code != 0 || !strings.Contains(out, "network-flood") {
		t.Errorf("check of samples/bombwatch.yaml: exit %d\n%s%s", code, out, errOut)
	}
	bad := writeFile(t, "bad.yaml", "rules:\n  - name: x\n    on: [accepted]\n    key: sendr\n    limit: 1\n    per: 1m\n    colour: red\n")
	code, out, errOut = bombwatch(t, "check", "-c", bad)
	want := bad + ":4: rules[0].key: \"sendr\" is not a key (sender, sender_domain, client_ip, client_net, sasl_user, uid)\n" +
		bad + ":7: rules[0].colour: unknown key\n"
	if code != 2 || out != "" || errOut != want {
		t.Errorf("check of a bad config: exit %d, stdout %q, stderr\n%s\nwant\n%s", code, out, errOut, want)
	}
}

// TestCheckWarnsOfOpenMetrics: metrics on every interface are valid, and
// said to be unauthenticated.
func TestCheckWarnsOfOpenMetrics(t *testing.T) {
	open := writeFile(t, "open.yaml", "listen: \":9187\"\n")
	code, _, errOut := bombwatch(t, "check", "-c", open)
	if code != 0 || !strings.Contains(errOut, open+": warning: listen: :9187 serves /metrics") {
		t.Errorf("check with listen :9187: exit %d, stderr %q", code, errOut)
	}
	local := writeFile(t, "local.yaml", "listen: 127.0.0.1:9187\ninputs: [{path: "+open+"}]\n")
	if code, _, errOut := bombwatch(t, "check", "-c", local); code != 0 || errOut != "" {
		t.Errorf("check with listen 127.0.0.1:9187: exit %d, stderr %q", code, errOut)
	}
}

func TestParse(t *testing.T) {
	log := writeFile(t, "mail.log", strings.Join([]string{
		"Nov 20 10:00:01 mx postfix/smtpd[1]: 4F2A1B3C4D: client=laptop.example.net[198.51.100.7], sasl_method=PLAIN, sasl_username=alice",
		"Nov 20 10:00:02 mx postfix/qmgr[2]: 4F2A1B3C4D: from=<a@Example.org>, size=1234, nrcpt=2 (queue active)",
		"Nov 20 10:00:03 mx postfix/smtpd[1]: disconnect from laptop.example.net[198.51.100.7]",
		"Nov 20 10:00:04 mx postfix/smtpd[3]: disconnect from other.example.net[198.51.100.8]",
		"Nov 20 10:00:05 mx kernel: something else",
	}, "\n")+"\n")
	code, out, errOut := bombwatch(t, "parse", "--json", log)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	evs := decodeLines(t, out)
	if len(evs) != 1 {
		t.Fatalf("events: %s", out)
	}
	e := evs[0]
	for k, v := range map[string]any{"mta": "postfix", "kind": "accepted", "host": "mx", "queue_id": "4F2A1B3C4D", "sender": "a@example.org",
		"client_ip": "198.51.100.7", "client_host": "laptop.example.net", "sasl_user": "alice", "size": 1234.0, "nrcpt": 2.0, "file": log, "line": 2.0} {
		if e[k] != v {
			t.Errorf("%s = %#v, want %#v", k, e[k], v)
		}
	}
	if ts, _ := e["time"].(string); !strings.HasPrefix(ts, time.Now().Format("2006")[:2]) || !strings.HasSuffix(ts, "Z") {
		t.Errorf("time = %q", e["time"])
	}

	code, out, _ = bombwatch(t, "parse", "--stats", "--json", log)
	var st fileStats
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("stats: exit %d %q", code, out)
	}
	if st.Lines != 5 || st.Recognised != 4 || st.Events["accepted"] != 1 || len(st.Unrecognised) != 1 ||
		st.Unrecognised[0] != (shapeCount{"kernel: something else", 1}) {
		t.Errorf("stats = %+v", st)
	}
	code, out, _ = bombwatch(t, "parse", "--stats", log)
	if code != 0 || !strings.Contains(out, "lines read      5") || !strings.Contains(out, "unrecognised lines") {
		t.Errorf("text stats: %s", out)
	}
}

// TestParseCorpus: parse --stats reads every corpus file without failing.
func TestParseCorpus(t *testing.T) {
	dir := corpus.Dir(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	more, _ := filepath.Glob(filepath.Join(dir, "*", "*", "*"))
	files = append(files, more...)
	for _, f := range files {
		if st, err := os.Stat(f); err != nil || st.IsDir() {
			continue
		}
		code, out, errOut := bombwatch(t, "parse", "--stats", "--json", f)
		if code != 0 {
			t.Errorf("%s: exit %d: %s", f, code, errOut)
			continue
		}
		var st fileStats
		if err := json.Unmarshal([]byte(out), &st); err != nil || st.Lines == 0 {
			t.Errorf("%s: stats %q", f, out)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := bombwatch(t, "version", "--json")
	var v map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v["version"] == "" || !strings.HasPrefix(v["go"], "go") {
		t.Errorf("version: %d %q", code, out)
	}
}

// TestCheckOutputLoadsBack: what `check` prints of each example config
// loads again as the same config, and prints the same.
func TestCheckOutputLoadsBack(t *testing.T) {
	for _, file := range []string{"../../samples/bombwatch.yaml", "../../config/default.yaml"} {
		code, out, errOut := bombwatch(t, "check", "-c", file)
		if code != 0 {
			t.Fatalf("check %s: exit %d\n%s", file, code, errOut)
		}
		again := writeFile(t, "again.yaml", out)
		code, out2, errOut := bombwatch(t, "check", "-c", again)
		if code != 0 {
			t.Fatalf("check of the output of check %s: exit %d\n%s\n%s", file, code, errOut, out)
		}
		strip := func(s string) string { _, rest, _ := strings.Cut(s, "\n"); return rest } // the "# effective config from" line
		if strip(out) != strip(out2) {
			t.Errorf("%s: check's output changed when loaded back:\n%s\nthen\n%s", file, out, out2)
		}
	}
	for d, want := range map[time.Duration]string{10 * time.Minute: "10m", 90 * time.Second: "1m30s", 30 * time.Second: "30s",
		time.Hour: "1h", 36 * time.Hour: "1d12h", 7 * 24 * time.Hour: "1w", 30 * 24 * time.Hour: "30d", 1500 * time.Millisecond: "1.5s"} {
		if got := config.FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%s) = %q, want %q", d, got, want)
		} else if back, err := config.ParseDuration(got); err != nil || back != d {
			t.Errorf("ParseDuration(%q) = %s, %v; want %s", got, back, err, d)
		}
	}
}

// TestNegativeCountsAreUsageErrors: a count flag given a negative value is
// a usage error (exit 2), never a panic.
func TestNegativeCountsAreUsageErrors(t *testing.T) {
	log := filepath.Join("..", "..", "samples", "postfix.log")
	for _, args := range [][]string{
		{"parse", "--stats", "--top", "-1", log},
		{"report", "--top", "-1"},
		{"bench", "--distinct", "-3"},
		{"bench", "--lines", "-5"},
		{"generate", "--lines", "-5"},
	} {
		if code, _, errOut := bombwatch(t, args...); code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, %q; want a usage error", args, code, errOut)
		}
	}
}
