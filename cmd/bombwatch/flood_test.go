package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/internal/loggen"
)

// TestRunFloodOfDistinctSendersStaysUnderMaxKeys: a flood of messages each
// from a sender of its own, recent enough that no window lets a key go,
// through `bombwatch run`: the keys held stay under max_keys (past it by a
// sixteenth at most), the rest are evicted and counted, and the process
// stays within the memory max_keys sizes it for.
// BOMBWATCH_FLOOD_SENDERS sets the flood (default 100,000; `make flood`:
// 10M) and BOMBWATCH_FLOOD_MAX_KEYS the cap (default a tenth of the flood;
// 0: bombwatch's default, 2,000,000).
func TestRunFloodOfDistinctSendersStaysUnderMaxKeys(t *testing.T) {
	senders := envInt(t, "BOMBWATCH_FLOOD_SENDERS", 100_000)
	maxKeys := envInt(t, "BOMBWATCH_FLOOD_MAX_KEYS", senders/10)
	capSetting := fmt.Sprintf("max_keys: %d\n", maxKeys)
	if maxKeys == 0 {
		maxKeys, capSetting = 2_000_000, ""
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	gap := time.Millisecond
	start := time.Now().Add(-time.Duration(senders)*gap - time.Minute)
	if _, err := loggen.Write(w, loggen.Options{Format: "postfix", Lines: senders, Seed: 1, Distinct: true, Terse: true, Gap: gap, Start: start}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(dir, "bombwatch.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("state: %s\ntimezone: UTC\nlisten: %s\n%sinputs: [{path: %s, start: beginning}]\n"+
		"rules:\n  - {name: senders, on: [accepted], key: sender, limit: 30, per: 1d}\n",
		filepath.Join(dir, "state.db"), addr, capSetting, log)), 0o644)

	d := startRunning(t, cfg)
	began := time.Now()
	metric := func(m, name string) float64 {
		for _, l := range strings.Split(m, "\n") {
			if rest, ok := strings.CutPrefix(l, name); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
				v, _ := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
				return v
			}
		}
		return 0
	}
	var peakKeys, keys, evicted, read float64
	deadline := began.Add(time.Minute + time.Duration(senders)*20*time.Microsecond)
	for read < float64(senders) || keys == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%.0f of %d lines read, %.0f keys, in %s\n%s", read, senders, keys, time.Since(began), d.stderr)
		}
		time.Sleep(100 * time.Millisecond)
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			continue // not listening yet
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := string(b)
		keys, evicted, read = metric(m, "bombwatch_keys"), metric(m, "bombwatch_keys_evicted_total"), metric(m, "bombwatch_lines_read_total")
		peakKeys = max(peakKeys, keys)
	}
	time.Sleep(1100 * time.Millisecond) // a tick after the last line: the gauges as it left them
	rss := peakRSS(t, d.cmd.Process.Pid)
	took := time.Since(began)
	if code, _ := d.stop(t); code != 0 {
		t.Fatalf("exit %d\n%s", code, d.stderr)
	}
	t.Logf("%d senders, max_keys %d: %s, at most %.0f keys held (sampled each second), %.0f evicted, peak RSS %d MiB",
		senders, maxKeys, took.Round(time.Millisecond), peakKeys, evicted, rss>>20)
	// Keys are evicted past a sixteenth over the cap, looked at every
	// 1,024 events, each of which makes a key in each window of the
	// rules that count it (the built-in ones and this one: under 16).
	slack := maxKeys/16 + 1024*16
	if peakKeys > float64(maxKeys+slack) {
		t.Errorf("%.0f keys held, cap %d", peakKeys, maxKeys)
	}
	if evicted < float64(senders-maxKeys-slack) {
		t.Errorf("%.0f keys evicted, want about %d", evicted, senders-maxKeys)
	}
	if !strings.Contains(d.stderr.String(), "too many keys") {
		t.Error("no warning of the keys forgotten")
	}
	// What max_keys sizes the process for: the heap's soft limit (400
	// bytes a key and 256 MiB, see memlimit.go) and 128 MiB beside the
	// heap (SQLite's cache, stacks, the binary).
	if limit := int64(maxKeys)*400 + 256<<20 + 128<<20; rss > limit {
		t.Errorf("peak RSS %d MiB, over the %d MiB max_keys %d sizes it for", rss>>20, limit>>20, maxKeys)
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a number", name, s)
	}
	return n
}

// peakRSS is the process's peak resident set (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}
