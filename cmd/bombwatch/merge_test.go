package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/sqlite"
)

// hostLogs are the logs of several MTA hosts over the same half hour: two
// Postfix (one with RFC 3339 stamps, one classic) and a sendmail, each
// line with the time it was written.
type hostLogs struct {
	names []string
	lines []stampedLine // all of them, in time order
}

type stampedLine struct {
	at   time.Time
	log  int
	text string
}

var mergeStart = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// message writes one accepted message of sender from client on log.
func (h *hostLogs) message(log int, at time.Time, n int, sender, client string) {
	qid := fmt.Sprintf("%X", 0xA000000+n)
	switch log {
	case 0:
		ts := at.Format("2006-01-02T15:04:05Z")
		h.add(at, log, fmt.Sprintf("%s mx1 postfix/smtpd[101]: %s: client=c%d.example[%s]", ts, qid, n, client))
		h.add(at, log, fmt.Sprintf("%s mx1 postfix/qmgr[102]: %s: from=<%s>, size=1000, nrcpt=1 (queue active)", ts, qid, sender))
	case 1:
		ts := at.Format(time.Stamp)
		h.add(at, log, fmt.Sprintf("%s mx2 postfix/smtpd[201]: %s: client=c%d.example[%s]", ts, qid, n, client))
		h.add(at, log, fmt.Sprintf("%s mx2 postfix/qmgr[202]: %s: from=<%s>, size=1000, nrcpt=1 (queue active)", ts, qid, sender))
	case 2:
		ts := at.Format(time.Stamp)
		h.add(at, log, fmt.Sprintf("%s mx3 sm-mta[%d]: 5AKA%09d: from=<%s>, size=1000, class=0, nrcpts=1, msgid=<%d@x>, proto=ESMTP, daemon=MTA, relay=c%d.example [%s]",
			ts, 3000+n%1000, n, sender, n, n, client))
	}
}

func (h *hostLogs) add(at time.Time, log int, text string) {
	h.lines = append(h.lines, stampedLine{at, log, text})
}

// mergeScenario builds logs of nlogs hosts (2 or 3) with background mail
// and three senders whose fate depends on reading the logs merged by time:
//   - split@bomb.example sends 40 messages in 40 s, one host after the
//     other: over 30 a minute only when the hosts' logs are merged;
//   - late@bomb.example sends 20 in the first minutes on one host and 20
//     twenty minutes later on another: never over the limit, however the
//     logs are read;
//   - flood@bomb.example floods one host: over the limit whichever way.
func mergeScenario(nlogs int, seed uint64) *hostLogs {
	h := &hostLogs{}
	for i := range nlogs {
		h.names = append(h.names, []string{"mx1.log", "mx2.log", "mx3.log"}[i])
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	n := 0
	for s := 0; s < 30*60; s += 1 + rng.IntN(3) {
		n++
		h.message(rng.IntN(nlogs), mergeStart.Add(time.Duration(s)*time.Second), n,
			fmt.Sprintf("user%d@example.net", rng.IntN(400)), fmt.Sprintf("198.51.100.%d", 1+rng.IntN(200)))
	}
	for i := range 40 {
		n++
		h.message(i%nlogs, mergeStart.Add(3*time.Minute+time.Duration(i)*time.Second), n, "split@bomb.example", fmt.Sprintf("203.0.113.%d", i))
	}
	for i := range 20 {
		n++
		h.message(0, mergeStart.Add(time.Minute+time.Duration(i)*time.Second), n, "late@bomb.example", "192.0.2.50")
		n++
		h.message(nlogs-1, mergeStart.Add(20*time.Minute+time.Duration(i)*time.Second), n, "late@bomb.example", "192.0.2.51")
	}
	for i := range 45 {
		n++
		h.message(1, mergeStart.Add(10*time.Minute+time.Duration(i)*time.Second), n, "flood@bomb.example", "192.0.2.60")
	}
	slices.SortStableFunc(h.lines, func(a, b stampedLine) int { return a.at.Compare(b.at) })
	return h
}

// write writes each log whole into dir and returns their paths.
func (h *hostLogs) write(t *testing.T, dir string) []string {
	t.Helper()
	bufs := make([]bytes.Buffer, len(h.names))
	for _, l := range h.lines {
		bufs[l.log].WriteString(l.text + "\n")
	}
	var paths []string
	for i, name := range h.names {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bufs[i].Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

func (h *hostLogs) sizes() []int64 {
	sizes := make([]int64, len(h.names))
	for _, l := range h.lines {
		sizes[l.log] += int64(len(l.text)) + 1
	}
	return sizes
}

const mergeRules = `
rules:
  - {name: sender, on: [accepted], key: sender, limit: 30, per: 1m, block: 10m}
`

func mergeConfig(t *testing.T, dir string, paths []string, extra string) string {
	t.Helper()
	var inputs strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&inputs, "  - {path: %s, start: beginning, poll: 20ms}\n", p)
	}
	cfg := filepath.Join(dir, "bombwatch.yaml")
	data := fmt.Sprintf("state: %s\ntimezone: UTC\n%sinputs:\n%s%s", filepath.Join(dir, "state.db"), extra, inputs.String(), mergeRules)
	if err := os.WriteFile(cfg, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// daemonDetections stops the daemon once it has read every log to its
// end, and returns what it detected.
func daemonDetections(t *testing.T, d *daemonProc, db string, paths []string, sizes []int64) []string {
	t.Helper()
	for i, p := range paths {
		waitRead(t, db, p, sizes[i])
	}
	time.Sleep(300 * time.Millisecond) // the events of the last lines, held for a quiet input
	if code, _ := d.stop(t); code != 0 {
		t.Fatalf("run exited %d:\n%s", code, d.stderr)
	}
	var out []string
	for l := range d.lines {
		out = append(out, l)
	}
	return normalize(t, out)
}

func keysOf(detections []string) []string {
	var keys []string
	for _, d := range detections {
		if f := strings.Fields(d); len(f) > 2 && f[0] == "block" {
			keys = append(keys, f[2])
		}
	}
	return keys
}

// TestRunDecidesWhatReplayDecides: the logs of two and of three hosts
// give the same detections (event, rule, key, time, value, end) through
// `replay`, through `run` catching up on logs written while it was down,
// and through `run` following them as they are written in time order.
func TestRunDecidesWhatReplayDecides(t *testing.T) {
	for _, nlogs := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d logs", nlogs), func(t *testing.T) {
			h := mergeScenario(nlogs, uint64(nlogs))

			dir := t.TempDir()
			paths := h.write(t, dir)
			cfg := mergeConfig(t, dir, paths, "")
			var stdout, stderr bytes.Buffer
			if code := run(append([]string{"replay", "-c", cfg, "--json"}, paths...), &stdout, &stderr); code != 0 {
				t.Fatalf("replay: %d %s", code, stderr.String())
			}
			want := normalize(t, strings.Split(strings.TrimSpace(stdout.String()), "\n"))
			keys := keysOf(want)
			if !slices.Contains(keys, "split@bomb.example") || !slices.Contains(keys, "flood@bomb.example") || slices.Contains(keys, "late@bomb.example") {
				t.Fatalf("replay blocked %v: want split@ and flood@ and not late@", keys)
			}

			// Catching up: every log written while bombwatch was down.
			catchDir := t.TempDir()
			catchPaths := h.write(t, catchDir)
			catchCfg := mergeConfig(t, catchDir, catchPaths, "")
			d := startDaemon(t, catchCfg, "--log-clock")
			got := daemonDetections(t, d, filepath.Join(catchDir, "state.db"), catchPaths, h.sizes())
			if !slices.Equal(got, want) {
				t.Errorf("run catching up detected\n%s\nreplay\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}

			// Live: the lines appended as they are written, in time order.
			liveDir := t.TempDir()
			var livePaths []string
			for _, name := range h.names {
				p := filepath.Join(liveDir, name)
				appendFile(t, p, nil)
				livePaths = append(livePaths, p)
			}
			liveCfg := mergeConfig(t, liveDir, livePaths, "")
			d = startRunning(t, liveCfg)
			files := make([]*os.File, len(livePaths))
			for i, p := range livePaths {
				f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				files[i] = f
			}
			for i, l := range h.lines {
				files[l.log].WriteString(l.text + "\n")
				if i%40 == 39 {
					time.Sleep(2 * time.Millisecond)
				}
			}
			got = daemonDetections(t, d, filepath.Join(liveDir, "state.db"), livePaths, h.sizes())
			if !slices.Equal(got, want) {
				t.Errorf("run following detected\n%s\nreplay\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestRunKill9DuringCatchUp: killed again and again while catching up on
// two logs of different formats, the daemon ends with the blocks of one
// replay of both.
func TestRunKill9DuringCatchUp(t *testing.T) {
	logs := [][]byte{genLog(t, "postfix", 200000, 21), genLog(t, "sendmail", 150000, 22)}
	refDir := t.TempDir()
	var refPaths []string
	for i, data := range logs {
		p := filepath.Join(refDir, fmt.Sprintf("mx%d.log", i+1))
		os.WriteFile(p, data, 0o644)
		refPaths = append(refPaths, p)
	}
	refCfg := writeConfig(t, refDir, "  - {path: /dev/null}\n")
	var so, se bytes.Buffer
	if code := run(append([]string{"replay", "-c", refCfg, "--db", filepath.Join(refDir, "ref.db")}, refPaths...), &so, &se); code != 0 {
		t.Fatalf("replay: %s", se.String())
	}
	want := blocksOf(t, filepath.Join(refDir, "ref.db"))
	if len(want) < 6 {
		t.Fatalf("only %d blocks in the logs", len(want))
	}

	dir := t.TempDir()
	var paths, inputs []string
	for i, data := range logs {
		p := filepath.Join(dir, fmt.Sprintf("mx%d.log", i+1))
		os.WriteFile(p, data, 0o644)
		paths = append(paths, p)
		inputs = append(inputs, fmt.Sprintf("  - {path: %s, start: beginning, poll: 50ms}\n", p))
	}
	cfg := writeConfig(t, dir, strings.Join(inputs, ""))
	db := filepath.Join(dir, "state.db")
	rng := rand.New(rand.NewPCG(23, 23))
	// Each life is killed at a random moment after its first save: the
	// catch-up goes on part way, life after life.
	kills, midway := 0, 0 // midway: kills with the catch-up saved part way
	var a, b int64
	for ; kills < 40; kills++ {
		d := startDaemon(t, cfg, "--log-clock")
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if na, nb := readTo(t, db, paths[0]), readTo(t, db, paths[1]); na != a || nb != b {
				break
			}
		}
		time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
		d.kill()
		a, b = readTo(t, db, paths[0]), readTo(t, db, paths[1])
		if a == int64(len(logs[0])) && b == int64(len(logs[1])) {
			break
		}
		midway++
	}
	d := startDaemon(t, cfg, "--log-clock")
	waitRead(t, db, paths[0], int64(len(logs[0])))
	waitRead(t, db, paths[1], int64(len(logs[1])))
	d.stop(t)
	if midway < 2 {
		t.Fatalf("only %d of %d kills with the catch-up saved part way", midway, kills)
	}
	t.Logf("%d kills, %d with the catch-up saved part way; %d blocks", kills, midway, len(want))
	if got := blocksOf(t, db); !slices.Equal(got, want) {
		t.Errorf("after %d kills the daemon has blocks\n%s\none replay\n%s", kills, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// readTo is the daemon's saved position in path, 0 when none.
func readTo(t testing.TB, db, path string) int64 {
	t.Helper()
	s, err := sqlite.Open(db)
	if err != nil {
		return 0
	}
	defer s.Close()
	snap, err := s.Load()
	if err != nil {
		return 0
	}
	return snap.Positions[path].Offset
}

// floodLines are n messages of sender on Postfix host mx1 from at on, one
// a second.
func floodLines(sender string, at time.Time, n, first int) []byte {
	var b bytes.Buffer
	for i := range n {
		ts := at.Add(time.Duration(i) * time.Second).Format("2006-01-02T15:04:05Z")
		qid := fmt.Sprintf("%X", 0xB000000+first+i)
		fmt.Fprintf(&b, "%s mx1 postfix/smtpd[1]: %s: client=c.example[192.0.2.%d]\n", ts, qid, 1+(first+i)%250)
		fmt.Fprintf(&b, "%s mx1 postfix/qmgr[2]: %s: from=<%s>, size=100, nrcpt=1 (queue active)\n", ts, qid, sender)
	}
	return b.Bytes()
}

// waitDetection waits for the daemon to print a block of key, and says
// how long it took.
func waitDetection(t *testing.T, d *daemonProc, key string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	timeout := time.After(limit)
	for {
		select {
		case l := <-d.lines:
			if strings.Contains(l, `"event":"block"`) && strings.Contains(l, key) {
				return time.Since(start)
			}
		case <-timeout:
			t.Fatalf("no block of %s within %s\n%s", key, limit, d.stderr)
		}
	}
}

// TestQuietInputHoldsBackAtMostMergeDelay: an input quiet for minutes
// does not delay the other's detections; one written a moment ago holds
// back the other's newer events for merge_delay, no longer.
func TestQuietInputHoldsBackAtMostMergeDelay(t *testing.T) {
	dir := t.TempDir()
	busy, quiet := filepath.Join(dir, "mx1.log"), filepath.Join(dir, "mx2.log")
	appendFile(t, busy, nil)
	appendFile(t, quiet, floodLines("early@example.org", mergeStart.Add(-time.Hour), 1, 0))
	old := time.Now().Add(-10 * time.Minute)
	os.Chtimes(quiet, old, old)
	cfg := mergeConfig(t, dir, []string{busy, quiet}, "merge_delay: 3s\n")
	d := startRunning(t, cfg)

	appendFile(t, busy, floodLines("first@bomb.example", mergeStart, 31, 0))
	if took := waitDetection(t, d, "first@bomb.example", 20*time.Second); took >= 3*time.Second {
		t.Errorf("an input quiet for 10 minutes held the other's detection back %s", took)
	}

	// The quiet input writes a line older than the next flood, then
	// nothing: the flood waits for it, merge_delay at most.
	line := floodLines("other@example.org", mergeStart.Add(10*time.Second), 1, 100) // older than all mx1 showed: goes at once
	appendFile(t, quiet, line)
	st, _ := os.Stat(quiet)
	waitRead(t, filepath.Join(dir, "state.db"), quiet, st.Size())
	appendFile(t, busy, floodLines("second@bomb.example", mergeStart.Add(2*time.Minute), 31, 200))
	took := waitDetection(t, d, "second@bomb.example", 20*time.Second)
	if took < 1500*time.Millisecond || took > 5*time.Second {
		t.Errorf("the detection came %s after the flood; want merge_delay (3s) after the quiet input's last line, give or take a second", took)
	}
	d.stop(t)
}

// TestSlowActionDoesNotStallReading: with a hook that takes 5 s and may
// run once at a time, a flood of 100 senders is still read at once and
// every block recorded; SIGTERM does not wait for the queued hooks.
func TestSlowActionDoesNotStallReading(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	appendFile(t, log, nil)
	cfg := filepath.Join(dir, "bombwatch.yaml")
	db := filepath.Join(dir, "state.db")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`state: %s
timezone: UTC
inputs: [{path: %s, poll: 20ms}]
actions:
  hook: {type: script, command: [/bin/sleep, "5"], concurrency: 1, retries: -1}
rules:
  - {name: sender, on: [accepted], key: sender, limit: 2, per: 1h, block: 1h, actions: [log, hook]}
`, db, log)), 0o644)
	d := startRunning(t, cfg)
	var flood bytes.Buffer
	for i := range 100 {
		flood.Write(floodLines(fmt.Sprintf("s%d@bomb.example", i), mergeStart.Add(time.Duration(i)*time.Second), 3, i*3))
	}
	appendFile(t, log, flood.Bytes())
	waitRead(t, db, log, int64(flood.Len())) // 30 s at most; the hooks alone would take 500 s
	// The sender rule's: the built-in rules run too.
	senderBlocks := func() int {
		n := 0
		for _, b := range blocksOf(t, db) {
			if strings.HasPrefix(b, "sender ") {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(5 * time.Second); senderBlocks() < 100 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if n := senderBlocks(); n != 100 {
		t.Errorf("%d blocks recorded, want 100", n)
	}
	if code, took := d.stop(t); code != 0 || took > 3*time.Second {
		t.Errorf("SIGTERM with hooks queued: exit %d after %s; want 0 at once", code, took)
	}
}

// TestRunGlobReadsEachLineOnce follows a glob (mail.log*) through two
// rotations by rename: the rotated files are the log's past, read once by
// its follower, never followed again from their start.
func TestRunGlobReadsEachLineOnce(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	appendFile(t, log, nil)
	cfg := writeConfig(t, dir, fmt.Sprintf("  - {path: '%s*', start: beginning, poll: 50ms}\n", log))
	data := genLog(t, "postfix", 30000, 31)
	want := replayDetections(t, cfg, data)
	if len(want) < 6 {
		t.Fatalf("only %d detections to find", len(want))
	}
	d := startRunning(t, cfg)
	db := filepath.Join(dir, "state.db")
	parts := chunks(data, 9, rand.New(rand.NewPCG(3, 4)))
	size := int64(0)
	for i, p := range parts {
		if i == 3 || i == 6 { // logrotate: .1 to .2, the log to .1, a new log
			waitRead(t, db, log, size)
			os.Rename(log+".1", log+".2")
			os.Rename(log, log+".1")
			appendFile(t, log, nil)
			size = 0
		}
		appendFile(t, log, p)
		size += int64(len(p))
		time.Sleep(20 * time.Millisecond)
	}
	waitRead(t, db, log, size)
	time.Sleep(1500 * time.Millisecond) // two glob scans at least: a rotated file taken for new would be read by now
	d.stop(t)
	if got := normalize(t, d.detections()); !slices.Equal(got, want) {
		t.Errorf("the daemon decided\n%s\nreplay decided\n%s\nstderr:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), d.stderr)
	}
	if strings.Contains(d.stderr.String(), "glob=true") {
		t.Errorf("a rotated file was followed as a new log:\n%s", d.stderr)
	}
}

// TestDirectoryInputSaidOnce: a directory given as an input is said at
// start and its read error logged once, not at every look (it was 355,767
// lines in 4 s).
func TestDirectoryInputSaidOnce(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	os.Mkdir(logs, 0o755)
	cfg := mergeConfig(t, dir, []string{logs}, "")
	d := startRunning(t, cfg)
	time.Sleep(time.Second) // 50 looks at poll: 20ms
	d.stop(t)
	out := d.stderr.String()
	if !strings.Contains(out, "is a directory, not a log") {
		t.Errorf("no warning at start:\n%s", out)
	}
	if n := strings.Count(out, "level=ERROR"); n != 1 {
		t.Errorf("%d error lines in a second, want 1:\n%s", n, out)
	}
}
