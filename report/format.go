package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bombwatch/bombwatch/parsers"
)

// JSON writes the report as one object.
func (r *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Quote keeps a log's bytes from moving a terminal or a mail around:
// control characters, bidirectional overrides (U+202E turns the rest of a
// line around) and invalid UTF-8 are written as Go escapes.
func Quote(s string) string {
	for _, c := range s {
		if c == '"' || c == '\\' || c == ' ' || unsafeRune(c) {
			return strconv.Quote(s)
		}
	}
	return s
}

// unsafeRune reports whether a rune must not reach a terminal, a
// spreadsheet or a page as it is: control and format characters (the
// bidirectional controls among them), and invalid UTF-8.
func unsafeRune(c rune) bool {
	return c < ' ' || c == 0x7f || c == utf8.RuneError || !unicode.IsPrint(c) && c != ' '
}

// Clean writes a log's string with its unsafe runes as escapes, for CSV
// cells, HTML and whole log lines, where quoting the whole string would change it.
func Clean(s string) string {
	ok := true
	for _, c := range s {
		if c == '\\' || unsafeRune(c) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// cell is Clean for a CSV cell that a spreadsheet will open: a cell that
// starts with = + - @ or a tab would be read as a formula, so it gets a
// leading apostrophe (OWASP's advice for CSV injection).
func cell(s string) string {
	s = Clean(s)
	if s != "" && strings.IndexByte("=+-@\t\r", s[0]) >= 0 {
		return "'" + s
	}
	return s
}

// fit cuts s to n columns.
func fit(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// Text writes the report for a terminal or a mail: aligned, within 100
// columns.
func (r *Report) Text(w io.Writer) error {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("bombwatch report, %s to %s (UTC)\n", r.Since.Format("2006-01-02 15:04"), r.Until.Format("2006-01-02 15:04"))
	if len(r.Hosts) > 0 {
		p("Hosts: %s\n", strings.Join(r.Hosts, ", "))
	}
	p("\n")
	p("Events\n")
	for _, k := range parsers.Kinds() {
		p("  %-18s %12d\n", k, r.Totals[k.String()])
	}
	p("\nBlocks: %d in the period", len(r.Blocks))
	active := 0
	for _, b := range r.Blocks {
		if b.Ended == nil {
			active++
		}
	}
	p(", %d in force at its end\n", active)
	if len(r.Blocks) > 0 {
		p("  %-11s %-14s %-30s %-11s %7s %s\n", "started", "rule", "key", "value/limit", "window", "ended")
		for _, b := range r.Blocks {
			ended := "in force"
			if b.Ended != nil {
				ended = b.Ended.Format("01-02 15:04") + " " + b.Reason
			}
			p("  %-11s %-14s %-30s %-11s %7s %s\n", b.Time.Format("01-02 15:04"), fit(Quote(b.Rule), 14), fit(b.KeyType+" "+Quote(b.Key), 30),
				fit(num(b.Value)+"/"+num(b.Limit), 11), fit(b.Window, 7), ended)
		}
	}
	if len(r.Repeat) > 0 {
		p("\nRepeat offenders\n")
		for _, x := range r.Repeat {
			p("  %-60s %4d blocks\n", fit(x.KeyType+" "+Quote(x.Key), 60), x.Blocks)
		}
	}
	for _, typ := range KeyTypes {
		list := r.Top[typ]
		if len(list) == 0 {
			continue
		}
		p("\nTop %s\n  %-54s %10s %14s %10s\n", strings.ReplaceAll(typ, "_", " "), "", "messages", "bytes", "recipients")
		for _, e := range list {
			p("  %-54s %10d %14d %10d\n", fit(Quote(e.Key), 54), e.Messages, e.Bytes, e.Recipients)
		}
	}
	l := r.Lost
	p("\nLost connections: %d, %d timed from their connect; improper pipelining: %d\n", l.Total, l.Timed, l.Pipelining)
	if l.Timed > 0 {
		p("  a 35 s greeting delay would have outlasted %.1f%% of them, 65 s %.1f%%\n", 100*l.Within35s, 100*l.Within65s)
		p("  %-10s %10s %10s\n", "stayed", "sessions", "cumulative")
		for _, b := range l.Buckets {
			p("  %3d-%-3d s  %10d %9.1f%%\n", b.From, b.From+10, b.Count, 100*b.Cumulative)
		}
	}
	p("\nThreshold advisor: each key's busiest minute and hour, over the keys\n")
	p("  %-14s %8s %21s %21s\n", "key", "keys", "minute p50/p99/max", "hour p50/p99/max")
	for _, typ := range KeyTypes {
		a := r.Advisor[typ]
		p("  %-14s %8d %21s %21s\n", typ, a.Keys, fmt.Sprintf("%d/%d/%d", a.Minute.P50, a.Minute.P99, a.Minute.Max),
			fmt.Sprintf("%d/%d/%d", a.Hour.P50, a.Hour.P99, a.Hour.Max))
	}
	for _, typ := range KeyTypes {
		if a := r.Advisor[typ]; a.Dropped > 0 {
			p("  %s: more than %d keys: keys of the least traffic were let go %d times as they came, so the count of keys is an estimate and a count above may be short by up to %d messages\n",
				typ, maxReportKeys, a.Dropped, a.ShortBy)
		}
	}
	if r.WhatIf != nil {
		p("\nWhat if %s: %d keys would have been blocked\n", r.WhatIf.Rule, len(r.WhatIf.Keys))
		for _, e := range r.WhatIf.Keys {
			p("  %-60s %6d in a window\n", fit(Quote(e.Key), 60), e.Messages)
		}
	}
	return nil
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// Tables are what `--format csv --table` can write.
var Tables = []string{"totals", "hours", "top", "blocks", "lost", "advisor", "what_if"}

// CSV writes one table of the report.
func (r *Report) CSV(w io.Writer, table string) error {
	c := csv.NewWriter(w)
	row := func(v ...string) { c.Write(v) }
	i := func(n int64) string { return strconv.FormatInt(n, 10) }
	t := func(p *time.Time) string {
		if p == nil {
			return ""
		}
		return p.Format(time.RFC3339)
	}
	switch table {
	case "totals":
		row("kind", "events")
		for _, k := range parsers.Kinds() {
			row(k.String(), i(r.Totals[k.String()]))
		}
	case "hours":
		row(append([]string{"hour"}, kindNames()...)...)
		for _, h := range r.Hours {
			v := []string{h.Hour.Format(time.RFC3339)}
			for _, k := range kindNames() {
				v = append(v, i(h.Events[k]))
			}
			row(v...)
		}
	case "top":
		row("key_type", "key", "messages", "bytes", "recipients")
		for _, typ := range KeyTypes {
			for _, e := range r.Top[typ] {
				row(typ, cell(e.Key), i(e.Messages), i(e.Bytes), i(e.Recipients))
			}
		}
	case "blocks":
		row("time", "rule", "key_type", "key", "value", "limit", "window", "until", "ended", "reason", "file", "line")
		for _, b := range r.Blocks {
			row(b.Time.Format(time.RFC3339), cell(b.Rule), b.KeyType, cell(b.Key), num(b.Value), num(b.Limit), b.Window, t(b.Until), t(b.Ended), cell(b.Reason), cell(b.File), i(b.Line))
		}
	case "lost":
		row("from_seconds", "to_seconds", "sessions", "cumulative_share")
		for _, b := range r.Lost.Buckets {
			row(i(b.From), i(b.From+10), i(b.Count), strconv.FormatFloat(b.Cumulative, 'f', 4, 64))
		}
	case "advisor":
		row("key_type", "keys", "minute_p50", "minute_p99", "minute_max", "hour_p50", "hour_p99", "hour_max")
		for _, typ := range KeyTypes {
			a := r.Advisor[typ]
			row(typ, strconv.Itoa(a.Keys), i(a.Minute.P50), i(a.Minute.P99), i(a.Minute.Max), i(a.Hour.P50), i(a.Hour.P99), i(a.Hour.Max))
		}
	case "what_if":
		row("key", "most_in_a_window")
		if r.WhatIf != nil {
			for _, e := range r.WhatIf.Keys {
				row(cell(e.Key), i(e.Messages))
			}
		}
	default:
		return fmt.Errorf("no table %q (%s)", table, strings.Join(Tables, ", "))
	}
	c.Flush()
	return c.Error()
}

func kindNames() []string {
	var out []string
	for _, k := range parsers.Kinds() {
		out = append(out, k.String())
	}
	return out
}

// bar is one bar of an inline SVG chart.
type bar struct {
	X, Y, W, H int
	Label      string
}

// chart lays out values as bars in a w×h box.
func chart(values []int64, labels []string, w, h int) []bar {
	var top int64 = 1
	for _, v := range values {
		top = max(top, v)
	}
	if len(values) == 0 {
		return nil
	}
	bw := max(1, w/len(values))
	out := make([]bar, len(values))
	for i, v := range values {
		bh := int(v * int64(h) / top)
		out[i] = bar{X: i * bw, Y: h - bh, W: max(1, bw-1), H: bh, Label: labels[i]}
	}
	return out
}

// HTML writes one self-contained page: charts as inline SVG, no script, no
// fetch, readable on a phone. html/template escapes every string a log
// gave.
func (r *Report) HTML(w io.Writer) error {
	var hourly []int64
	var hourLabels []string
	for _, h := range r.Hours {
		var n int64
		for _, v := range h.Events {
			n += v
		}
		hourly = append(hourly, n)
		hourLabels = append(hourLabels, fmt.Sprintf("%s: %d events", h.Hour.Format("2006-01-02 15:00"), n))
	}
	var lost []int64
	var lostLabels []string
	for _, b := range r.Lost.Buckets {
		lost = append(lost, b.Count)
		lostLabels = append(lostLabels, fmt.Sprintf("%d-%d s: %d", b.From, b.From+10, b.Count))
	}
	return page.Execute(w, map[string]any{
		"R": r, "Kinds": kindNames(), "KeyTypes": KeyTypes,
		"Hourly": chart(hourly, hourLabels, 600, 120), "Lost": chart(lost, lostLabels, 600, 120),
	})
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"num":  num,
	"pct":  func(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" },
	"when": func(t time.Time) string { return t.Format("2006-01-02 15:04") },
	"whenp": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.Format("2006-01-02 15:04")
	},
	"under": func(s string) string { return strings.ReplaceAll(s, "_", " ") },
	"c":     Clean,
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bombwatch report {{when .R.Since}} – {{when .R.Until}}</title>
<style>
body{font:15px/1.4 system-ui,sans-serif;margin:1em auto;max-width:60em;padding:0 .8em;color:#222}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;font-size:.9em;display:block;overflow-x:auto}
th,td{text-align:left;padding:.2em .5em;border-bottom:1px solid #eee;white-space:nowrap}
td.n,th.n{text-align:right}svg{width:100%;height:auto;background:#fafafa}rect{fill:#c33}
.key{max-width:28em;overflow:hidden;text-overflow:ellipsis}
</style></head><body>
<h1>bombwatch report</h1>
<p>{{when .R.Since}} to {{when .R.Until}} (UTC){{if .R.Hosts}}; hosts: {{range $i, $h := .R.Hosts}}{{if $i}}, {{end}}{{$h}}{{end}}{{end}}</p>
<h2>Events</h2>
<table><tr>{{range .Kinds}}<th class="n">{{under .}}</th>{{end}}</tr>
<tr>{{range .Kinds}}<td class="n">{{index $.R.Totals .}}</td>{{end}}</tr></table>
{{if .Hourly}}<svg viewBox="0 0 600 120" role="img" aria-label="events per hour">{{range .Hourly}}<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Label}}</title></rect>{{end}}</svg>{{end}}
<h2>Blocks ({{len .R.Blocks}})</h2>
{{if .R.Blocks}}<table><tr><th>started</th><th>rule</th><th>key</th><th class="n">value</th><th class="n">limit</th><th>window</th><th>until</th><th>ended</th></tr>
{{range .R.Blocks}}<tr><td>{{when .Time}}</td><td>{{c .Rule}}</td><td class="key">{{.KeyType}} {{c .Key}}</td><td class="n">{{num .Value}}</td><td class="n">{{num .Limit}}</td><td>{{.Window}}</td><td>{{whenp .Until}}</td><td>{{whenp .Ended}} {{c .Reason}}</td></tr>
{{end}}</table>{{end}}
{{if .R.Repeat}}<h2>Repeat offenders</h2><table>{{range .R.Repeat}}<tr><td class="key">{{.KeyType}} {{c .Key}}</td><td class="n">{{.Blocks}} blocks</td></tr>{{end}}</table>{{end}}
{{range $typ := .KeyTypes}}{{with index $.R.Top $typ}}<h2>Top {{under $typ}}</h2>
<table><tr><th>key</th><th class="n">messages</th><th class="n">bytes</th><th class="n">recipients</th></tr>
{{range .}}<tr><td class="key">{{c .Key}}</td><td class="n">{{.Messages}}</td><td class="n">{{.Bytes}}</td><td class="n">{{.Recipients}}</td></tr>
{{end}}</table>{{end}}{{end}}
<h2>Lost connections</h2>
<p>{{.R.Lost.Total}} lost, {{.R.Lost.Timed}} timed from their connect; improper pipelining: {{.R.Lost.Pipelining}}.
{{if .R.Lost.Timed}}A 35 s greeting delay would have outlasted {{pct .R.Lost.Within35s}} of them, 65 s {{pct .R.Lost.Within65s}}.{{end}}</p>
{{if .Lost}}<svg viewBox="0 0 600 120" role="img" aria-label="lost connections by how long the client stayed">{{range .Lost}}<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Label}}</title></rect>{{end}}</svg>{{end}}
<h2>Threshold advisor</h2>
<table><tr><th>key</th><th class="n">keys</th><th class="n">busiest minute p50/p99/max</th><th class="n">busiest hour p50/p99/max</th></tr>
{{range $typ := .KeyTypes}}{{$a := index $.R.Advisor $typ}}<tr><td>{{under $typ}}</td><td class="n">{{$a.Keys}}</td><td class="n">{{$a.Minute.P50}}/{{$a.Minute.P99}}/{{$a.Minute.Max}}</td><td class="n">{{$a.Hour.P50}}/{{$a.Hour.P99}}/{{$a.Hour.Max}}</td></tr>
{{end}}</table>
{{with .R.WhatIf}}<h2>What if {{c .Rule}}</h2><p>{{len .Keys}} keys would have been blocked.</p>
<table>{{range .Keys}}<tr><td class="key">{{c .Key}}</td><td class="n">{{.Messages}} in a window</td></tr>{{end}}</table>{{end}}
</body></html>
`))
