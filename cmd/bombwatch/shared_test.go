package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/internal/pgtest"
	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/state"
)

// sharedRules count per sender over both hosts: limit 5 in 10 minutes.
const sharedRules = `rules:
  - {name: flood, on: [accepted], key: sender, limit: 5, per: 10m, block: 1h, actions: [log]}
`

// linesPublished reads every line each host published to the shared
// state, and how many times.
func linesPublished(t *testing.T, dsn string, hosts ...string) map[string]int {
	t.Helper()
	s, err := state.Open(dsn, state.OpenOptions{Host: "reader", ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := map[string]int{}
	for _, h := range hosts {
		var d parsers.Decoder
		err := s.(state.Shared).Events(h, 0, func(_ int64, data []byte) error {
			return d.DecodeEach(data, func(e *parsers.Event) { out[fmt.Sprintf("%s %s:%d", h, filepath.Base(e.File), e.Line)]++ })
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// blockedKeys are the keys of a `--json` output's blocks, sorted.
func blockedKeys(t *testing.T, out string) []string {
	t.Helper()
	var keys []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var d struct{ Event, Key string }
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if d.Event == "block" {
			keys = append(keys, d.Key)
		}
	}
	slices.Sort(keys)
	return keys
}

// TestHostsKilledLoseAndDoubleNothing: two daemons on one PostgreSQL
// state follow two hosts' logs appended live; one or the other is killed
// with SIGKILL now and then and started again, and, while the database is
// stopped, one is killed and started on its journal, twice. In the end every line was
// published exactly once, the senders over the limit only across the
// hosts — and only they — are blocked, once each, as a replay of both
// logs together decides, and `bans list` says the same on both hosts; a
// ban and an unban by hand on one host reach the other's daemon.
func TestHostsKilledLoseAndDoubleNothing(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	dir := t.TempDir()
	hosts := []string{"mx1", "mx2"}
	logs, cfgs := map[string]string{}, map[string]string{}
	for _, h := range hosts {
		logs[h] = filepath.Join(dir, h+".log")
		appendFile(t, logs[h], nil)
		cfgs[h] = filepath.Join(dir, h+".yaml")
		os.WriteFile(cfgs[h], []byte(fmt.Sprintf("state: %q\nhost: %s\njournal: %s\ntimezone: UTC\nmerge_delay: 200ms\ninputs:\n  - {path: %s, start: beginning, poll: 20ms}\n%s",
			dsn, h, filepath.Join(dir, h+".journal.db"), logs[h], sharedRules)), 0o644)
	}
	running := map[string]*daemonProc{}
	start := func(h string) {
		d := startDaemon(t, cfgs[h])
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(d.stderr.String(), "msg=running"); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not start:\n%s", h, d.stderr)
			}
		}
		running[h] = d
	}
	for _, h := range hosts {
		start(h)
	}

	// Round r: bomb-r sends 3 messages on each host (6: over), calm-r 2
	// on each (4: under).
	rng := rand.New(rand.NewPCG(15, 1))
	written := map[string]int{}
	queue := 0
	kills := 0
	const rounds, outageRounds = 30, 6
	round := func(r int) {
		for _, h := range hosts {
			var b strings.Builder
			for _, m := range []struct {
				sender string
				n      int
			}{{fmt.Sprintf("bomb-%d@example.org", r), 3}, {fmt.Sprintf("calm-%d@example.org", r), 2}} {
				for range m.n {
					queue++
					fmt.Fprintf(&b, "%s %s postfix/qmgr[7]: Q%07X: from=<%s>, size=100, nrcpt=1 (queue active)\n",
						time.Now().UTC().Format(time.RFC3339Nano), h, queue, m.sender)
					written[h]++
				}
			}
			appendFile(t, logs[h], []byte(b.String()))
		}
		time.Sleep(time.Duration(20+rng.IntN(60)) * time.Millisecond)
	}
	for r := range rounds {
		round(r)
		if rng.IntN(4) == 0 {
			h := hosts[rng.IntN(len(hosts))]
			running[h].kill()
			kills++
			if rng.IntN(2) == 0 {
				time.Sleep(300 * time.Millisecond) // down a while: the other goes on
			}
			start(h)
		}
	}
	// Then the database goes down for a while: mx1 is killed and starts
	// again on its journal, alone, and is killed again; the rounds go on.
	// Alone, each host sees 3 of a bomb's 6: the bombs of those rounds are
	// blocked once the hosts see each other again.
	srv.Stop(t)
	running["mx1"].kill()
	start("mx1")
	for r := rounds; r < rounds+outageRounds; r++ {
		round(r)
		if r == rounds+outageRounds/2 {
			running["mx1"].kill()
			start("mx1")
		}
	}
	kills += 2
	if !strings.Contains(running["mx1"].stderr.String(), "going on alone on this host's journal") {
		t.Errorf("mx1 did not start on its journal:\n%s", running["mx1"].stderr)
	}
	srv.Restart(t)
	// Every line published, then nothing more for a moment.
	var got map[string]int
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got = linesPublished(t, dsn, hosts...)
		if len(got) == written["mx1"]+written["mx2"] || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(time.Second)
	got = linesPublished(t, dsn, hosts...)
	twice := 0
	for line, n := range got {
		if n != 1 {
			twice++
			if twice < 5 {
				t.Errorf("%s published %d times", line, n)
			}
		}
	}
	if len(got) != written["mx1"]+written["mx2"] {
		t.Errorf("%d lines published of %d written", len(got), written["mx1"]+written["mx2"])
	}
	t.Logf("%d rounds (%d in an outage), %d lines, %d kills; %d lines published, %d more than once", rounds+outageRounds, outageRounds, written["mx1"]+written["mx2"], kills, len(got), twice)
	if kills == 0 {
		t.Fatal("no daemon was killed: the test tested nothing")
	}

	// What the hosts decided together, what a replay of both logs decides.
	var want []string
	for r := range rounds + outageRounds {
		want = append(want, fmt.Sprintf("bomb-%d@example.org", r))
	}
	slices.Sort(want)
	code, out, errOut := bombwatch(t, "replay", "--json", "-c", cfgs["mx1"], logs["mx1"], logs["mx2"])
	if code != 0 {
		t.Fatalf("replay: %s", errOut)
	}
	if keys := blockedKeys(t, out); !slices.Equal(keys, want) {
		t.Errorf("a replay of both logs blocks %v, want the bombs %v", keys, want)
	}
	var lists []string
	for _, h := range hosts {
		waitFor := time.Now().Add(10 * time.Second)
		for {
			code, out, errOut := bombwatch(t, "bans", "list", "--json", "-c", cfgs[h])
			if code != 0 {
				t.Fatalf("bans list on %s: %s", h, errOut)
			}
			var bans []struct {
				ID  int64
				Key string
			}
			if err := json.Unmarshal([]byte(out), &bans); err != nil {
				t.Fatalf("bans list: %v\n%s", err, out)
			}
			var keys, ids []string
			for _, b := range bans {
				keys = append(keys, b.Key)
				ids = append(ids, fmt.Sprintf("%d %s", b.ID, b.Key))
			}
			slices.Sort(keys)
			slices.Sort(ids)
			if slices.Equal(keys, want) || time.Now().After(waitFor) {
				if !slices.Equal(keys, want) {
					t.Errorf("bans list on %s: %v, want the bombs once each %v", h, keys, want)
				}
				lists = append(lists, strings.Join(ids, "\n"))
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if lists[0] != lists[1] {
		t.Errorf("bans list differs between the hosts:\nmx1 %s\nmx2 %s", lists[0], lists[1])
	}

	// A ban and an unban by hand on mx2 reach mx1's daemon: it runs the
	// block's actions, then lifts them.
	running["mx1"].detections()
	seen := func(want string) bool { // a detection of manual@ on mx1
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			for _, l := range running["mx1"].detections() {
				if strings.Contains(l, want) && strings.Contains(l, `"key":"manual@example.org"`) {
					return true
				}
			}
		}
		return false
	}
	if code, _, errOut := bombwatch(t, "bans", "ban", "manual@example.org", "--for", "1h", "-c", cfgs["mx2"]); code != 0 {
		t.Fatalf("bans ban on mx2: %s", errOut)
	}
	if !seen(`"event":"block"`) {
		t.Errorf("mx1 did not take in the ban made on mx2:\n%s", running["mx1"].stderr)
	}
	if code, _, errOut := bombwatch(t, "bans", "unban", "manual@example.org", "-c", cfgs["mx2"]); code != 0 {
		t.Fatalf("bans unban on mx2: %s", errOut)
	}
	if !seen(`"event":"unblock"`) {
		t.Error("mx1 did not lift the ban lifted on mx2")
	}
	for _, h := range hosts {
		if code, _ := running[h].stop(t); code != 0 {
			t.Errorf("%s exited %d:\n%s", h, code, running[h].stderr)
		}
	}

	// The report of each host counts its own traffic, and says so; with
	// --all-hosts, the site's: the two added up.
	accepted := func(args ...string) (int64, []string) {
		code, out, errOut := bombwatch(t, append([]string{"report", "--since", "30d", "--format", "json"}, args...)...)
		if code != 0 {
			t.Fatalf("report %v: %s", args, errOut)
		}
		var r struct {
			Totals map[string]int64 `json:"totals"`
			Hosts  []string         `json:"hosts"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		return r.Totals["accepted"], r.Hosts
	}
	one, hostsOne := accepted("-c", cfgs["mx1"])
	two, hostsTwo := accepted("-c", cfgs["mx2"])
	all, hostsAll := accepted("-c", cfgs["mx1"], "--all-hosts")
	if one == 0 || two == 0 || all != one+two {
		t.Errorf("accepted: mx1 %d, mx2 %d, all hosts %d (want their sum)", one, two, all)
	}
	if !slices.Equal(hostsOne, []string{"mx1"}) || !slices.Equal(hostsTwo, []string{"mx2"}) || !slices.Equal(hostsAll, []string{"mx1", "mx2"}) {
		t.Errorf("hosts said: %v, %v, %v", hostsOne, hostsTwo, hostsAll)
	}
}
