package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/internal/loggen"
	"github.com/bombwatch/bombwatch/sqlite"
	"github.com/bombwatch/bombwatch/state"
)

// The tests of `bombwatch run` drive the real binary, built once.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bombwatch-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "bombwatch")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building bombwatch: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemonProc is a running `bombwatch run`.
type daemonProc struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *lockedBuffer
	done   chan error
	exited chan struct{}
}

func startDaemon(t testing.TB, cfg string, args ...string) *daemonProc {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"run", "-c", cfg, "--json"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{cmd: cmd, lines: make(chan string, 1000), stderr: &lockedBuffer{}, done: make(chan error, 1), exited: make(chan struct{})}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.lines <- sc.Text()
		}
		close(d.lines)
	}()
	go func() {
		err := cmd.Wait()
		close(d.exited)
		d.done <- err
	}()
	// A test that fails half way must not leave its daemon running.
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			cmd.Process.Kill()
			<-d.exited
		}
	})
	return d
}

// startRunning starts a daemon and waits until it follows its inputs: a
// SIGTERM before its handler is set would end it as the default does, and
// a file rotated before it follows its inputs is not its to read.
func startRunning(t *testing.T, cfg string) *daemonProc {
	t.Helper()
	d := startDaemon(t, cfg, "--log-clock")
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(d.stderr.String(), "msg=running"); {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not start:\n%s", d.stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return d
}

// lockedBuffer is the daemon's stderr: written by exec's goroutine, read by
// the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// stop sends SIGTERM and returns the exit status and how long it took.
func (d *daemonProc) stop(t testing.TB) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		t.Fatalf("no exit 10 s after SIGTERM\n%s", d.stderr)
	}
	return d.cmd.ProcessState.ExitCode(), time.Since(start)
}

func (d *daemonProc) kill() {
	d.cmd.Process.Kill()
	<-d.done
}

// detections drains what the daemon printed so far.
func (d *daemonProc) detections() []string {
	var out []string
	for {
		select {
		case l, ok := <-d.lines:
			if !ok {
				return out
			}
			out = append(out, l)
		default:
			return out
		}
	}
}

func appendFile(t testing.TB, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// waitRead waits until the daemon's saved position in path is size.
func waitRead(t testing.TB, db, path string, size int64) {
	t.Helper()
	abs, _ := filepath.Abs(path)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if readTo(t, db, abs) == size {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the daemon did not read %s to %d bytes in 30 s", path, size)
}

func genLog(t testing.TB, format string, lines int, seed uint64) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := loggen.Write(&buf, loggen.Options{Format: format, Lines: lines, Seed: seed, BombEvery: 1500}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// chunks cuts data at line ends into about n pieces.
func chunks(data []byte, n int, rng *rand.Rand) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		size := len(data) / max(1, n-len(out))
		if size < len(data) {
			size = max(1, size/2+rng.IntN(size+1))
		}
		cut := min(len(data), size)
		if i := bytes.IndexByte(data[cut-1:], '\n'); i >= 0 {
			cut += i
		} else {
			cut = len(data)
		}
		out = append(out, data[:cut])
		data = data[cut:]
	}
	return out
}

const testRules = `
rules:
  - {name: sender, on: [accepted], key: sender, limit: 30, per: 1m, block: 10m}
  - {name: client, on: [accepted], key: client_ip, limit: 60, per: 1m, block: 0, release: below}
  - {name: account, on: [accepted], key: sasl_user, limit: 200, per: 1h, block: 2h, escalate: {factor: 2, max: 1d}}
`

func writeConfig(t testing.TB, dir, inputs string) string {
	t.Helper()
	cfg := filepath.Join(dir, "bombwatch.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("state: %s\ntimezone: UTC\ninputs:\n%s%s", filepath.Join(dir, "state.db"), inputs, testRules)), 0o644)
	return cfg
}

// replayDetections is what `bombwatch replay` says of the whole log.
func replayDetections(t testing.TB, cfg string, data []byte) []string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "all.log")
	os.WriteFile(log, data, 0o644)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"replay", "-c", cfg, "--json", log}, &stdout, &stderr); code != 0 {
		t.Fatalf("replay: %d %s", code, stderr.String())
	}
	return normalize(t, strings.Split(strings.TrimSpace(stdout.String()), "\n"))
}

// normalize keeps what a detection decides: not the file it came from.
func normalize(t testing.TB, lines []string) []string {
	var out []string
	for _, l := range lines {
		if l == "" {
			continue
		}
		var d map[string]any
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		out = append(out, fmt.Sprintf("%v %v %v %v %v %v %v", d["event"], d["rule"], d["key"], d["time"], d["value"], d["until"], d["reason"]))
	}
	return out
}

// TestRunFollowsGrowthAndRotation appends a log to a running daemon in
// pieces, rotating it by rename and by copytruncate on the way: it must
// decide what a replay of the whole log decides.
func TestRunFollowsGrowthAndRotation(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	appendFile(t, log, nil)
	cfg := writeConfig(t, dir, fmt.Sprintf("  - {path: %s, start: beginning, poll: 100ms}\n", log))
	data := genLog(t, "postfix", 30000, 5)
	want := replayDetections(t, cfg, data)
	if len(want) < 6 {
		t.Fatalf("only %d detections to find", len(want))
	}
	d := startRunning(t, cfg) // a file rotated before it runs is not its to read
	parts := chunks(data, 9, rand.New(rand.NewPCG(1, 2)))
	size := int64(0)
	for i, p := range parts {
		switch i {
		case 3: // logrotate create: rename, then a new file
			waitRead(t, filepath.Join(dir, "state.db"), log, size)
			os.Rename(log, log+".1")
			appendFile(t, log, nil)
			size = 0
		case 6: // copytruncate: copy, then cut in place
			waitRead(t, filepath.Join(dir, "state.db"), log, size)
			old, _ := os.ReadFile(log)
			os.WriteFile(log+".2", old, 0o644)
			os.Truncate(log, 0)
			size = 0
		}
		appendFile(t, log, p)
		size += int64(len(p))
		time.Sleep(20 * time.Millisecond)
	}
	waitRead(t, filepath.Join(dir, "state.db"), log, size)
	time.Sleep(100 * time.Millisecond)
	code, took := d.stop(t)
	got := normalize(t, d.detections())
	if code != 0 || took > time.Second {
		t.Errorf("SIGTERM: exit %d after %v (want 0 within a second)\n%s", code, took, d.stderr)
	}
	if !slices.Equal(got, want) {
		t.Errorf("the daemon decided\n%s\nreplay decided\n%s\nstderr:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), d.stderr)
	}
}

// TestRunMultilog follows qmail's multilog directory through its
// rotations of current.
func TestRunMultilog(t *testing.T) {
	dir := t.TempDir()
	cur := filepath.Join(dir, "current")
	appendFile(t, cur, nil)
	cfg := writeConfig(t, dir, fmt.Sprintf("  - {path: %s, format: qmail, start: beginning, poll: 100ms}\n", cur))
	data := genLog(t, "qmail", 20000, 6)
	want := replayDetections(t, cfg, data)
	d := startRunning(t, cfg) // a file rotated before it runs is not its to read
	size := int64(0)
	for i, p := range chunks(data, 5, rand.New(rand.NewPCG(3, 4))) {
		if i > 0 { // multilog: current becomes @<tai64n>.s, a new current starts
			os.Rename(cur, filepath.Join(dir, fmt.Sprintf("@40000000%016x.s", i)))
			appendFile(t, cur, nil)
			size = 0
		}
		appendFile(t, cur, p)
		size += int64(len(p))
		time.Sleep(50 * time.Millisecond)
	}
	waitRead(t, filepath.Join(dir, "state.db"), cur, size)
	d.stop(t)
	if got := normalize(t, d.detections()); !slices.Equal(got, want) {
		t.Errorf("the daemon decided\n%s\nreplay decided\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// blocksOf reads the blocks a state database holds, as comparable lines.
func blocksOf(t testing.TB, db string) []string {
	t.Helper()
	s, err := sqlite.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bs, err := s.Blocks(false, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range bs {
		out = append(out, blockLine(b))
	}
	sort.Strings(out)
	return out
}

func blockLine(b state.Block) string {
	return fmt.Sprintf("%s %s %s until=%s value=%g ended=%s %s", b.Rule, b.Key, b.Since.Format(time.RFC3339Nano),
		b.Until.Format(time.RFC3339Nano), b.Value, b.Ended.Format(time.RFC3339Nano), b.EndReason)
}

// TestRunKill9 kills the daemon with SIGKILL at random points while a log
// with bombs is written, and starts it again each time: the blocks it ends
// with — when, how long, with what value, how they ended — are those of a
// run that was never interrupted.
func TestRunKill9(t *testing.T) {
	data := genLog(t, "postfix", 40000, 8)
	// The uninterrupted run: replay --db of the whole log.
	refDir := t.TempDir()
	refCfg := writeConfig(t, refDir, "  - {path: /dev/null}\n")
	refLog := filepath.Join(refDir, "mail.log")
	os.WriteFile(refLog, data, 0o644)
	var so, se bytes.Buffer
	if code := run([]string{"replay", "-c", refCfg, "--db", filepath.Join(refDir, "ref.db"), refLog}, &so, &se); code != 0 {
		t.Fatalf("replay: %s", se.String())
	}
	want := blocksOf(t, filepath.Join(refDir, "ref.db"))
	if len(want) < 6 {
		t.Fatalf("only %d blocks in the log", len(want))
	}

	rng := rand.New(rand.NewPCG(9, 9))
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	appendFile(t, log, nil)
	cfg := writeConfig(t, dir, fmt.Sprintf("  - {path: %s, start: beginning, poll: 50ms}\n", log))
	d := startDaemon(t, cfg, "--log-clock")
	kills := 0
	for _, p := range chunks(data, 40, rng) {
		appendFile(t, log, p)
		time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
		if rng.IntN(4) == 0 {
			d.kill()
			kills++
			d = startDaemon(t, cfg, "--log-clock")
		}
	}
	waitRead(t, filepath.Join(dir, "state.db"), log, int64(len(data)))
	d.stop(t)
	if kills < 5 {
		t.Fatalf("only %d kills", kills)
	}
	got := blocksOf(t, filepath.Join(dir, "state.db"))
	if !slices.Equal(got, want) {
		t.Errorf("after %d kills the daemon has blocks\n%s\nthe uninterrupted run\n%s", kills, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRunSignals: SIGHUP reloads a valid config and refuses a bad one;
// SIGTERM exits 0 within a second.
func TestRunSignals(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	appendFile(t, log, nil)
	cfg := filepath.Join(dir, "c.yaml")
	base := fmt.Sprintf("state: %s\ninputs:\n  - {path: %s, poll: 50ms}\n", filepath.Join(dir, "state.db"), log)
	os.WriteFile(cfg, []byte(base+"rules:\n  - {name: lax, on: [accepted], key: sender, limit: 100, per: 1m}\n"), 0o644)
	d := startDaemon(t, cfg)
	time.Sleep(300 * time.Millisecond)
	line := func(i int) []byte {
		return fmt.Appendf(nil, "%s mx postfix/qmgr[1]: SIGQ%06d: from=<hup@example.org>, size=1, nrcpt=1 (queue active)\n",
			time.Now().UTC().Format(time.RFC3339Nano), i)
	}
	for i := range 3 {
		appendFile(t, log, line(i))
	}
	time.Sleep(300 * time.Millisecond)
	if got := d.detections(); len(got) != 0 {
		t.Fatalf("detections under the lax rule: %v", got)
	}
	os.WriteFile(cfg, []byte(base+"rules: [\n"), 0o644) // broken
	d.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if !strings.Contains(d.stderr.String(), "reload refused") {
		t.Errorf("a bad config was not refused:\n%s", d.stderr)
	}
	os.WriteFile(cfg, []byte(base+"rules:\n  - {name: strict, on: [accepted], key: sender, limit: 3, per: 1m}\n"), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(500 * time.Millisecond)
	// The new rule's window starts empty: the lax rule's counts went with it.
	for i := range 4 {
		appendFile(t, log, line(10+i))
	}
	deadline := time.After(5 * time.Second)
	var got []string
	for len(got) == 0 {
		select {
		case l := <-d.lines:
			got = append(got, l)
		case <-deadline:
			t.Fatalf("no detection after the reload\n%s", d.stderr)
		}
	}
	if !strings.Contains(got[0], `"rule":"strict"`) || !strings.Contains(got[0], `"value":4`) {
		t.Errorf("after the reload: %s", got[0])
	}
	if code, took := d.stop(t); code != 0 || took > time.Second {
		t.Errorf("SIGTERM: exit %d after %v", code, took)
	}
}

// TestRunStdin: "-" follows standard input to its end.
func TestRunStdin(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("state: %s\ninputs: [{path: \"-\"}]\nrules:\n  - {name: in, on: [accepted], key: sender, limit: 2, per: 1m}\n",
		filepath.Join(dir, "state.db"))), 0o644)
	cmd := exec.Command(binary, "run", "-c", cfg, "--json")
	var lines []string
	for i := range 3 {
		lines = append(lines, fmt.Sprintf("%s mx postfix/qmgr[1]: STDQ%04d: from=<in@example.org>, size=1, nrcpt=1 (queue active)",
			time.Now().UTC().Format(time.RFC3339Nano), i))
	}
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || !strings.Contains(sc.Text(), `"key":"in@example.org"`) {
		t.Errorf("first detection: %q", sc.Text())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
}

// BenchmarkDetectionLatency measures the time from a line written to the
// log to its block printed by the daemon, which has applied its actions by
// then: the median and the 99th percentile.
func BenchmarkDetectionLatency(b *testing.B) {
	dir := b.TempDir()
	log := filepath.Join(dir, "mail.log")
	appendFile(b, log, nil)
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("state: %s\ninputs:\n  - {path: %s}\nrules:\n  - {name: one, on: [accepted], key: sender, limit: 1, per: 1m}\n",
		filepath.Join(dir, "state.db"), log)), 0o644)
	d := startDaemon(b, cfg)
	defer d.stop(b)
	time.Sleep(300 * time.Millisecond)
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		now := time.Now().UTC().Format(time.RFC3339Nano)
		appendFile(b, log, fmt.Appendf(nil, "%s mx postfix/qmgr[1]: LATA%07d: from=<s%d@example.org>, size=1, nrcpt=1 (queue active)\n", now, i, i))
		start := time.Now()
		appendFile(b, log, fmt.Appendf(nil, "%s mx postfix/qmgr[1]: LATB%07d: from=<s%d@example.org>, size=1, nrcpt=1 (queue active)\n", now, i, i))
		select {
		case <-d.lines:
			lat = append(lat, time.Since(start))
		case <-time.After(10 * time.Second):
			b.Fatalf("no detection\n%s", d.stderr)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "ms-p99")
}

// TestOneDaemonPerState: a second daemon, or a replay, on the state a
// daemon writes exits at once with a clear message, and the first goes on.
func TestOneDaemonPerState(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	appendFile(t, log, nil)
	cfg := writeConfig(t, dir, fmt.Sprintf("  - {path: %s, format: postfix, start: beginning}\n", log))
	d := startDaemon(t, cfg)
	data := []byte("2026-11-20T10:00:00Z mx postfix/smtpd[1]: connect from c.example[192.0.2.1]\n")
	appendFile(t, log, data)
	waitRead(t, filepath.Join(dir, "state.db"), log, int64(len(data)))

	start := time.Now()
	code, _, errOut := bombwatch(t, "run", "-c", cfg)
	if code != 1 || !strings.Contains(errOut, "is in use by another bombwatch (pid ") || time.Since(start) > 5*time.Second {
		t.Errorf("a second daemon: exit %d after %v, stderr %q", code, time.Since(start), errOut)
	}
	code, _, errOut = bombwatch(t, "replay", "--db", filepath.Join(dir, "state.db"), log)
	if code != 1 || !strings.Contains(errOut, "is in use by another bombwatch") {
		t.Errorf("a replay on the daemon's state: exit %d, stderr %q", code, errOut)
	}
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("the first daemon exited %d\n%s", code, d.stderr)
	}
	// Once it is gone, the state is free again.
	if code, _, errOut = bombwatch(t, "replay", "--db", filepath.Join(dir, "state.db"), log); code != 0 {
		t.Errorf("a replay after the daemon: exit %d, stderr %q", code, errOut)
	}
}

// TestRunSaysWhenTheSavedFileIsGone: a log whose saved file was removed
// while the daemon was down (rotated out of what logrotate keeps) is read
// from the start of the current file, and the daemon warns that the lines
// in between were not read.
func TestRunSaysWhenTheSavedFileIsGone(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	data := genLog(t, "postfix", 400, 9)
	half := bytes.LastIndexByte(data[:len(data)/2], '\n') + 1
	appendFile(t, log, data[:half])
	cfg := writeConfig(t, dir, fmt.Sprintf("  - {path: %s, format: postfix, start: beginning, poll: 50ms}\n", log))
	d := startRunning(t, cfg)
	waitRead(t, filepath.Join(dir, "state.db"), log, int64(half))
	if code, _ := d.stop(t); code != 0 {
		t.Fatalf("exit %d\n%s", code, d.stderr)
	}
	os.Remove(log)
	appendFile(t, log, data[half:])
	d = startRunning(t, cfg)
	defer d.stop(t)
	waitRead(t, filepath.Join(dir, "state.db"), log, int64(len(data)-half))
	if !strings.Contains(d.stderr.String(), "level=WARN msg=\"input: the file of the saved position is gone") {
		t.Errorf("no warning that lines were lost:\n%s", d.stderr)
	}
}
