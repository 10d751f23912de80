package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestReplayFromStartNeverCountsTwice: --from-start on a database that
// holds the log is refused, and --reset starts it afresh, with the same
// report as the first replay.
func TestReplayFromStartNeverCountsTwice(t *testing.T) {
	_, cfg, log, db := floodState(t)
	_, first, _ := bombwatch(t, "report", "-c", cfg, "--db", db, "--format", "json")
	code, _, errOut := bombwatch(t, "replay", "-c", cfg, "--db", db, "--from-start", log)
	if code != 2 || !strings.Contains(errOut, "--reset") {
		t.Errorf("--from-start on a database holding the log: exit %d, %q", code, errOut)
	}
	if code, _, errOut := bombwatch(t, "replay", "-c", cfg, "--db", db, "--from-start", "--reset", log); code != 0 {
		t.Fatalf("--reset: %s", errOut)
	}
	if _, again, _ := bombwatch(t, "report", "-c", cfg, "--db", db, "--format", "json"); again != first {
		t.Errorf("after --reset the report differs:\n%s\nfirst:\n%s", again, first)
	}
	if code, _, _ := bombwatch(t, "replay", "-c", cfg, "--reset", log); code != 2 {
		t.Errorf("--reset without --db: exit %d, want 2", code)
	}
}

// TestReplayActFailureIsAnExit: replay --act whose every action fails
// ends with one line and exit 1, at once (no retries).
func TestReplayActFailureIsAnExit(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`rules:
  - {name: s, on: [accepted], key: sender, limit: 5, per: 1m, block: 1h, enforce: sender, actions: [log, senders]}
actions:
  senders: {type: postfix_map, path: %s, map_type: texthash}
`, filepath.Join(dir, "no", "such", "dir", "access"))), 0o644)
	var lines []byte
	for i := range 5 {
		lines = append(lines, floodLines(fmt.Sprintf("flood%d@bomb.example", i), mustTime("2026-11-20T10:00:00Z"), 8, i*10)...)
	}
	log := writeFile(t, "mail.log", string(lines))
	code, _, errOut := bombwatch(t, "replay", "-c", cfg, "--act", log)
	if code != 1 || !strings.Contains(errOut, "5 actions failed, the first senders:") {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}
	if n := strings.Count(errOut, "senders"); n != 1 {
		t.Errorf("the failure is said %d times, want once:\n%s", n, errOut)
	}
}

// TestReportPeriodErrors: a period that ends before it starts, or starts
// in the future, is a usage error, not an empty report.
func TestReportPeriodErrors(t *testing.T) {
	_, cfg, _, db := floodState(t)
	for _, args := range [][]string{
		{"--since", "2026-11-21", "--until", "2026-11-20"},
		{"--since", "2026-11-20T10:00:00Z", "--until", "2026-11-20T10:00:00Z"},
		{"--since", "2999-01-01", "--until", "2999-01-02"},
	} {
		code, _, errOut := bombwatch(t, append([]string{"report", "-c", cfg, "--db", db}, args...)...)
		if code != 2 || !strings.Contains(errOut, "--since") {
			t.Errorf("report %v: exit %d, %q", args, code, errOut)
		}
	}
	if code, out, errOut := bombwatch(t, "report", "-c", cfg, "--db", db, "--since", "2026-11-20", "--until", "2026-11-21"); code != 0 || !strings.Contains(out, "flood@bomb.example") {
		t.Errorf("a good period: exit %d %s %s", code, out, errOut)
	}
	// A SQLite state is one host's: there is no site to add up.
	if code, _, errOut := bombwatch(t, "report", "-c", cfg, "--db", db, "--all-hosts"); code != 2 || !strings.Contains(errOut, "--all-hosts: the state") {
		t.Errorf("report --all-hosts of a SQLite state: exit %d, %q", code, errOut)
	}
}

// dovecotFirst is a Debian mail.log whose first 120 lines are dovecot's
// and opendkim's, then Postfix's flood.
func dovecotFirst() string {
	var b strings.Builder
	for i := range 60 {
		fmt.Fprintf(&b, "2026-11-20T09:59:%02dZ mx dovecot: imap-login: Login: user=<u%d>, method=PLAIN, rip=192.0.2.%d, lip=192.0.2.1, mpid=%d, TLS\n", i%60, i, i+1, 1000+i)
		fmt.Fprintf(&b, "2026-11-20T09:59:%02dZ mx opendkim[77]: %X: DKIM-Signature field added (s=mail, d=example.org)\n", i%60, 0xA000+i)
	}
	b.Write(floodLines("flood@bomb.example", mustTime("2026-11-20T10:00:00Z"), 40, 0))
	return b.String()
}

// TestDetectionSkipsOtherPrograms: a mail.log that starts with other
// programs' lines is detected from Postfix's, by replay, parse and run.
func TestDetectionSkipsOtherPrograms(t *testing.T) {
	log := writeFile(t, "mail.log", dovecotFirst())
	if code, out, errOut := bombwatch(t, "replay", "--json", log); code != 0 || !strings.Contains(out, `"key":"flood@bomb.example"`) {
		t.Errorf("replay: exit %d, %s %s", code, out, errOut)
	}
	if code, out, errOut := bombwatch(t, "parse", "--stats", "--json", log); code != 0 || !strings.Contains(out, `"format":"postfix"`) {
		t.Errorf("parse: exit %d, %s %s", code, out, errOut)
	}
	dir := t.TempDir()
	followed := filepath.Join(dir, "mail.log")
	os.WriteFile(followed, []byte(dovecotFirst()), 0o644)
	cfg := writeConfig(t, dir, fmt.Sprintf("  - {path: %s, start: beginning, poll: 20ms}\n", followed))
	d := startRunning(t, cfg)
	waitDetection(t, d, "flood@bomb.example", 10*time.Second)
	d.stop(t)
	if strings.Contains(d.stderr.String(), "level=ERROR") {
		t.Errorf("run said an error:\n%s", d.stderr)
	}
}

// TestReportNetworksAtTheRulesPrefix: client networks in a report are
// summed at the prefix of the config's own client_net rule, not a fixed
// /24 nor the built-in botnet rule's.
func TestReportNetworksAtTheRulesPrefix(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("state: "+filepath.Join(dir, "state.db")+"\ninputs: [{path: /dev/null}]\nrules:\n"+
		"  - {name: nets, on: [accepted], key: client_net, prefix: {ipv4: 26, ipv6: 64}, limit: 1000, per: 1m}\n"), 0o644)
	log := writeFile(t, "mail.log", string(floodLines("flood@bomb.example", mustTime("2026-11-20T10:00:00Z"), 100, 0)))
	if code, _, errOut := bombwatch(t, "replay", "-c", cfg, "--db", filepath.Join(dir, "state.db"), log); code != 0 {
		t.Fatalf("replay: %s", errOut)
	}
	code, out, errOut := bombwatch(t, "report", "-c", cfg, "--format", "json", "--since", "2026-11-20", "--until", "2026-11-21")
	var r struct {
		Top map[string][]struct{ Key string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("report: exit %d %s\n%s", code, errOut, out)
	}
	var nets []string
	for _, n := range r.Top["client_net"] {
		nets = append(nets, n.Key)
	}
	if !slices.Contains(nets, "192.0.2.64/26") || slices.Contains(nets, "192.0.2.0/24") {
		t.Errorf("report's top networks %q, want /26 ones", nets)
	}
}

// TestStateDSN: every command opens its state from a DSN: a path and
// sqlite:PATH are the same SQLite file; a store this build lacks is an
// error that names the stores it has.
func TestStateDSN(t *testing.T) {
	_, cfg, log, db := floodState(t)
	for _, args := range [][]string{
		{"replay", "-c", cfg, "--db", "sqlite:" + db, log},
		{"bans", "list", "-c", cfg, "--db", "sqlite:" + db, "--json"},
		{"report", "-c", cfg, "--db", "sqlite:" + db, "--format", "json"},
		{"explain", "flood@bomb.example", "-c", cfg, "--db", "sqlite:" + db},
	} {
		if code, _, errOut := bombwatch(t, args...); code != 0 {
			t.Errorf("%v: exit %d: %s", args, code, errOut)
		}
	}
	_, viaPath, _ := bombwatch(t, "bans", "list", "-c", cfg, "--db", db, "--json")
	_, viaDSN, _ := bombwatch(t, "bans", "list", "-c", cfg, "--db", "sqlite:"+db, "--json")
	if viaPath != viaDSN || !strings.Contains(viaPath, "flood@bomb.example") {
		t.Errorf("a path and sqlite:PATH differ:\n%s\n%s", viaPath, viaDSN)
	}
	// A PostgreSQL DSN of a server that is not there: a plain error that
	// names the state, never its password.
	if code, _, errOut := bombwatch(t, "bans", "list", "--db", "postgres://u:secret@127.0.0.1:1/bw?connect_timeout=5"); code != 1 ||
		!strings.Contains(errOut, "postgres://u:***@127.0.0.1:1/bw") || strings.Contains(errOut, "secret") {
		t.Errorf("a PostgreSQL DSN: exit %d: %s", code, errOut)
	}
}
