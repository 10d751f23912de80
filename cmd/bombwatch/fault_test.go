package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/sqlite"
	"github.com/bombwatch/bombwatch/state"
)

// The fault harness writes a log at a steady pace while it is rotated —
// by rename, copytruncate, copytruncate with gzip, delayed gzip and
// multilog — with the daemon running, stalled by SIGSTOP, and stopped,
// and killed with SIGKILL at random; then it compares what the daemon
// saved with one replay of the whole log: every block, and every
// per-minute count of every key. `make test` runs it small; `make soak`
// runs it large (BOMBWATCH_FAULT_LINES, BOMBWATCH_FAULT_SEED;
// BOMBWATCH_FAULT_DEBUG=1 logs what every daemon said).

// faultSize is the harness's size: lines per mode, and the seed.
func faultSize(t *testing.T) (int, uint64) {
	lines, seed := 6000, uint64(1)
	if v := os.Getenv("BOMBWATCH_FAULT_LINES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 {
			t.Fatalf("BOMBWATCH_FAULT_LINES=%q: a number of lines, at least 100", v)
		}
		lines = n
	}
	if v := os.Getenv("BOMBWATCH_FAULT_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("BOMBWATCH_FAULT_SEED=%q: a number", v)
		}
		seed = n
	}
	return lines, seed
}

// rotator rotates a log one way.
type rotator struct {
	path  string // the file written
	mode  string
	n     int // rotations so far
	multi int // multilog's next @ name
}

func (r *rotator) shift(suffix string) {
	// Every rotation is kept: a daemon killed again and again may fall
	// behind by many, and one that logrotate removed is lost to any
	// reader (the daemon says so: see Follower.Resume's "new").
	for i := r.n; i >= 1; i-- {
		os.Rename(fmt.Sprintf("%s.%d%s", r.path, i, suffix), fmt.Sprintf("%s.%d%s", r.path, i+1, suffix))
	}
}

func gzipFile(t testing.TB, dst string, data []byte) {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	zw.Close()
	if err := os.WriteFile(dst, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// rotate rotates the log as its mode says. The writer waits meanwhile,
// so copytruncate loses nothing here (in life it may lose what is written
// between the copy and the truncation, to every reader).
func (r *rotator) rotate(t testing.TB) {
	t.Helper()
	r.n++
	switch r.mode {
	case "rename":
		r.shift("")
		os.Rename(r.path, r.path+".1")
		appendFile(t, r.path, nil)
	case "copytruncate", "copytruncate-gzip":
		data, err := os.ReadFile(r.path)
		if err != nil {
			t.Fatal(err)
		}
		if r.mode == "copytruncate" {
			r.shift("")
			os.WriteFile(r.path+".1", data, 0o644)
		} else {
			r.shift(".gz")
			gzipFile(t, r.path+".1.gz", data)
		}
		os.Truncate(r.path, 0)
	case "delaycompress":
		// mail.log.1 is compressed to mail.log.2.gz at the next rotation.
		r.shift(".gz")
		if data, err := os.ReadFile(r.path + ".1"); err == nil {
			gzipFile(t, r.path+".2.gz", data)
			os.Remove(r.path + ".1")
		}
		os.Rename(r.path, r.path+".1")
		appendFile(t, r.path, nil)
	case "multilog":
		r.multi++
		os.Rename(r.path, filepath.Join(filepath.Dir(r.path), fmt.Sprintf("@4000000069%014x.s", r.multi)))
		appendFile(t, r.path, nil)
	default:
		t.Fatalf("no rotation %q", r.mode)
	}
}

// savedCounts reads every per-minute count a state holds, summed per
// minute, key type and key, as sorted lines.
func savedCounts(t testing.TB, db string) []string {
	t.Helper()
	s, err := sqlite.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	type k struct {
		minute   int64
		typ, key string
	}
	sum := map[k][3]int64{}
	err = s.Stats(0, 1<<40, func(st *state.Stat) {
		c := sum[k{st.Minute, st.KeyType, st.Key}]
		c[0] += st.Messages
		c[1] += st.Bytes
		c[2] += st.Recipients
		sum[k{st.Minute, st.KeyType, st.Key}] = c
	})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(sum))
	for key, c := range sum {
		out = append(out, fmt.Sprintf("%d %s %s %d %d %d", key.minute, key.typ, key.key, c[0], c[1], c[2]))
	}
	sort.Strings(out)
	return out
}

// diffCount is how many lines of a and b are not in the other.
func diffCount(a, b []string) int {
	in := map[string]int{}
	for _, l := range a {
		in[l]++
	}
	for _, l := range b {
		in[l]--
	}
	n := 0
	for _, c := range in {
		n += max(c, -c)
	}
	return n
}

func TestFaultHarness(t *testing.T) {
	lines, seed := faultSize(t)
	for i, mode := range []string{"rename", "copytruncate", "copytruncate-gzip", "delaycompress", "multilog"} {
		t.Run(mode, func(t *testing.T) { runFaults(t, mode, lines, seed+uint64(i)) })
	}
}

func runFaults(t *testing.T, mode string, lines int, seed uint64) {
	format, name := "postfix", "mail.log"
	if mode == "multilog" {
		format, name = "qmail", "current"
	}
	data := genLog(t, format, lines, seed)

	// The reference: one replay of the whole log.
	refDir := t.TempDir()
	refCfg := writeConfig(t, refDir, "  - {path: /dev/null}\n")
	refLog := filepath.Join(refDir, "all.log")
	os.WriteFile(refLog, data, 0o644)
	if code, _, errOut := bombwatch(t, "replay", "-c", refCfg, "--format", format, "--db", filepath.Join(refDir, "ref.db"), refLog); code != 0 {
		t.Fatalf("replay: %s", errOut)
	}
	wantBlocks, wantCounts := blocksOf(t, filepath.Join(refDir, "ref.db")), savedCounts(t, filepath.Join(refDir, "ref.db"))

	dir := t.TempDir()
	log := filepath.Join(dir, name)
	appendFile(t, log, nil)
	cfg := writeConfig(t, dir, fmt.Sprintf("  - {path: %s, format: %s, start: beginning, poll: 50ms}\n", log, format))
	rot := &rotator{path: log, mode: mode}
	rng := rand.New(rand.NewPCG(seed, 42))
	d := startRunning(t, cfg)
	var kills, stalls, stops, whileStalled, whileStopped int
	var logs []string // every daemon's log, for BOMBWATCH_FAULT_DEBUG
	pieces := chunks(data, max(40, lines/150), rng)
	// A daemon that never saved a position knows nothing of the files
	// rotated before it: the faults start once it has.
	appendFile(t, log, pieces[0])
	waitRead(t, filepath.Join(dir, "state.db"), log, int64(len(pieces[0])))
	for i, p := range pieces[1:] {
		i++
		appendFile(t, log, p)
		// With BOMBWATCH_FAULT_DEBUG, the times each piece spans: a
		// per-minute difference then names the pieces, and the faults
		// around them.
		if ls := bytes.Split(bytes.TrimSpace(p), []byte("\n")); len(ls) > 0 && os.Getenv("BOMBWATCH_FAULT_DEBUG") != "" {
			logs = append(logs, fmt.Sprintf("--- piece %d: %.25s .. %.25s", i, ls[0], ls[len(ls)-1]))
		}
		time.Sleep(time.Duration(rng.IntN(15)) * time.Millisecond) // the pace of a busy MTA, in short
		if i == len(pieces)-1 {
			break
		}
		switch r := rng.IntN(20); {
		case r < 3: // rotated with the daemon running
			rot.rotate(t)
			logs = append(logs, fmt.Sprintf("--- rotated after piece %d", i))
		case r < 5: // killed, and started again
			d.kill()
			logs = append(logs, fmt.Sprintf("--- killed after piece %d\n%s", i, d.stderr))
			kills++
			d = startRunning(t, cfg)
		case r == 5: // stalled across one or two rotations (a busy moment)
			d.cmd.Process.Signal(syscall.SIGSTOP)
			for range 1 + rng.IntN(2) {
				appendFile(t, log, nil)
				rot.rotate(t)
				whileStalled++
			}
			stalls++
			logs = append(logs, fmt.Sprintf("--- stalled after piece %d", i))
			d.cmd.Process.Signal(syscall.SIGCONT)
		case r == 6: // stopped across rotations and writing
			if code, _ := d.stop(t); code != 0 {
				t.Fatalf("the daemon exited %d\n%s", code, d.stderr)
			}
			logs = append(logs, fmt.Sprintf("--- stopped after piece %d\n%s", i, d.stderr))
			stops++
			for range 1 + rng.IntN(2) {
				rot.rotate(t)
				whileStopped++
			}
			d = startRunning(t, cfg)
		}
	}
	st, _ := os.Stat(log)
	waitRead(t, filepath.Join(dir, "state.db"), log, st.Size())
	if code, _ := d.stop(t); code != 0 {
		t.Fatalf("the daemon exited %d\n%s", code, d.stderr)
	}
	if os.Getenv("BOMBWATCH_FAULT_DEBUG") != "" {
		t.Logf("daemon logs:\n%s\n--- last\n%s", strings.Join(logs, "\n"), d.stderr)
	}
	gotBlocks, gotCounts := blocksOf(t, filepath.Join(dir, "state.db")), savedCounts(t, filepath.Join(dir, "state.db"))
	t.Logf("%s: %d lines, %d rotations (%d while stalled, %d while stopped), %d kills, %d stalls, %d stops; %d blocks, %d of %d counts differ, %d blocks differ",
		mode, lines, rot.n, whileStalled, whileStopped, kills, stalls, stops, len(wantBlocks),
		diffCount(gotCounts, wantCounts), len(wantCounts), diffCount(gotBlocks, wantBlocks))
	if rot.n < 3 {
		t.Errorf("only %d rotations: the harness tested little", rot.n)
	}
	if !slices.Equal(gotCounts, wantCounts) {
		t.Errorf("per-minute counts differ from one replay in %d lines (daemon, then replay):\n%s", diffCount(gotCounts, wantCounts),
			strings.Join(firstDiffs(gotCounts, wantCounts, 10), "\n"))
	}
	if !slices.Equal(gotBlocks, wantBlocks) {
		t.Errorf("the daemon has blocks\n%s\none replay\n%s", strings.Join(gotBlocks, "\n"), strings.Join(wantBlocks, "\n"))
	}
}

// firstDiffs lists up to n lines in one of a and b but not the other.
func firstDiffs(a, b []string, n int) []string {
	inB := map[string]bool{}
	for _, l := range b {
		inB[l] = true
	}
	inA := map[string]bool{}
	for _, l := range a {
		inA[l] = true
	}
	var out []string
	for _, l := range a {
		if !inB[l] && len(out) < n {
			out = append(out, "daemon only: "+l)
		}
	}
	for _, l := range b {
		if !inA[l] && len(out) < 2*n {
			out = append(out, "replay only: "+l)
		}
	}
	return out
}
