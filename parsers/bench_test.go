package parsers

import (
	"bufio"
	"bytes"
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
	b.ResetTimer()
	n := 0
	for b.Loop() {
		p.Parse(lines[n%len(lines)], int64(n+1), emit)
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkPostfix(b *testing.B)  { benchmarkParser(b, "postfix") }
func BenchmarkSendmail(b *testing.B) { benchmarkParser(b, "sendmail") }
func BenchmarkQmail(b *testing.B)    { benchmarkParser(b, "qmail") }
