package parsers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/internal/loggen"
)

// benchmarkParser parses a generated log of the format over and over and
// reports lines/s and allocations per line.
func benchmarkParser(b *testing.B, format string) {
	var buf bytes.Buffer
	if _, err := loggen.Write(&buf, loggen.Options{Format: format, Lines: 50000, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	f, _ := Lookup(format)
	p := f.New(Options{Reference: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)})
	events := 0
	emit := func(*Event) { events++ }
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n := 0
	for b.Loop() {
		p.Parse(lines[n%len(lines)], int64(n+1), emit)
		n++
	}
	runtime.ReadMemStats(&after)
	// allocs/op rounds down to a whole number: this says how far from zero.
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(n), "allocs/line")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkPostfix(b *testing.B)  { benchmarkParser(b, "postfix") }
func BenchmarkSendmail(b *testing.B) { benchmarkParser(b, "sendmail") }
func BenchmarkQmail(b *testing.B)    { benchmarkParser(b, "qmail") }

// BenchmarkJournald reads the generated Postfix log as journalctl -o json
// would give it.
func BenchmarkJournald(b *testing.B) {
	var buf bytes.Buffer
	if _, err := loggen.Write(&buf, loggen.Options{Format: "postfix", Lines: 20000, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	var lines [][]byte
	c := newClock(Options{})
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var h header
		if !parseHeader(sc.Bytes(), c, &h) {
			continue
		}
		entry, _ := json.Marshal(map[string]string{
			"__REALTIME_TIMESTAMP": strconv.FormatInt(h.Time.UnixMicro(), 10), "_HOSTNAME": string(h.Host),
			"SYSLOG_IDENTIFIER": string(h.Program), "_PID": string(h.PID), "MESSAGE": string(h.Message),
		})
		lines = append(lines, entry)
	}
	f, _ := Lookup("journald")
	p := f.New(Options{})
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		p.Parse(lines[n%len(lines)], int64(n+1), func(*Event) {})
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "lines/s")
}

// TestPostfixSteadyStateAllocatesNothing: once its tables are warm, the
// Postfix parser reads whole message lives — connect, client=, cleanup,
// qmgr, deliveries, removed, disconnect — without allocating per line. What
// is left is Go's maps rebuilding their tables as queue IDs and sessions
// come and go: about one allocation per 200 lines, amortized.
func TestPostfixSteadyStateAllocatesNothing(t *testing.T) {
	var buf bytes.Buffer
	if _, err := loggen.Write(&buf, loggen.Options{Format: "postfix", Lines: 20000, Seed: 3, Distinct: false}); err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		if l := sc.Bytes(); bytes.Contains(l, []byte("postfix/smtp")) || bytes.Contains(l, []byte("postfix/qmgr")) ||
			bytes.Contains(l, []byte("postfix/cleanup")) || bytes.Contains(l, []byte("/smtpd[")) && !bytes.Contains(l, []byte("warning")) && !bytes.Contains(l, []byte("NOQUEUE")) && !bytes.Contains(l, []byte("lost connection")) {
			lines = append(lines, append([]byte(nil), l...))
		}
	}
	f, _ := Lookup("postfix")
	p := f.New(Options{Reference: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)})
	events := 0
	emit := func(*Event) { events++ }
	run := func() {
		for i, l := range lines {
			p.Parse(l, int64(i+1), emit)
		}
	}
	run() // warm the tables: the same queue IDs and senders come again
	if allocs := testing.AllocsPerRun(3, run); allocs/float64(len(lines)) > 0.01 {
		t.Errorf("%v allocations for %d lines of message lives", allocs, len(lines))
	}
	if events == 0 {
		t.Fatal("no event")
	}
}

// BenchmarkPostfixDistinct parses what a flood of forged senders looks
// like to qmgr: a message a line, each with a queue ID and sender of its
// own, a millisecond apart; the queue table fills and is pruned as it
// would be. The line is made in the loop (about a tenth of the time).
func BenchmarkPostfixDistinct(b *testing.B) {
	f, _ := Lookup("postfix")
	p := f.New(Options{Reference: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)})
	emit := func(*Event) {}
	start := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	var line []byte
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n := 0
	for b.Loop() {
		line = start.Add(time.Duration(n)*time.Millisecond).AppendFormat(line[:0], "2006-01-02T15:04:05.000000Z07:00")
		line = append(line, " mx1 postfix/qmgr[900]: "...)
		line = strconv.AppendUint(line, uint64(0x4A000000+n), 16)
		line = append(line, ": from=<unique"...)
		line = strconv.AppendInt(line, int64(n), 10)
		line = append(line, "@many.example>, size=35865, nrcpt=3 (queue active)"...)
		p.Parse(line, int64(n+1), emit)
		n++
	}
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(n), "allocs/line") // the sender's string
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "lines/s")
}
