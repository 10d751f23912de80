package parsers

import (
	"bufio"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/internal/corpus"
)

// failJSON is fail2ban's annotation of the log line after it.
type failJSON struct {
	Time  string `json:"time"`
	Match bool   `json:"match"`
	Host  string `json:"host"`
	User  string `json:"user"`
	Desc  string `json:"desc"`
}

// failJSONDisagreements are the lines where bombwatch knowingly differs
// from a fail2ban filter, which decides whom to ban rather than what
// happened. Keyed by file and a part of the line.
var failJSONDisagreements = []struct{ file, line, why string }{
	{"postfix", "lost connection after DATA from good-host", "a lost connection is an event; whether to count it is a rule's business"},
	{"postfix", "improper command pipelining after AUTH from unknown[192.0.2.11]", "false only in fail2ban's 'errors' mode; the same line is a match in the normal mode"},
	{"postfix", "hostname bad.example.com does not resolve", "a DNS fact about the client's name, not something the client did"},
	{"postfix", "Invalid authentication mechanism", "an AUTH with a mechanism not offered is still a failed attempt (fail2ban's aggressive mode agrees)"},
	{"postfix", "lost connection after AUTH from unknown[192.0.2.23]", "lost_connection is its own kind: the auth failure is counted once, from the disconnect line"},
	{"sendmail-reject", "rA37ZTSC026255: from=<anton@domain.com>", "nrcpts=0 is a refused transaction whether or not its rejections were logged"},
}

// splogger puts the exact Unix time before qmail's messages; bombwatch
// takes it over the syslog stamp, which was local time (here UTC+2).
var spLoggerStamp = "sd6 qmail: 11575"

func disagreement(file, line string) string {
	for _, d := range failJSONDisagreements {
		if d.file == file && strings.Contains(line, d.line) {
			return d.why
		}
	}
	return ""
}

// TestFailJSON checks every line of fail2ban's Postfix, sendmail and qmail
// test logs against its failJSON annotation: a line fail2ban matches gives
// an event with that client address (and user, where given), at that time
// of year; a line it does not match gives no event about a client.
func TestFailJSON(t *testing.T) {
	dir := corpus.Dir(t)
	for _, file := range []struct{ name, format string }{
		{"postfix", "postfix"}, {"sendmail-reject", "sendmail"}, {"sendmail-auth", "sendmail"}, {"qmail", "qmail"},
	} {
		t.Run(file.name, func(t *testing.T) {
			f, err := os.Open(filepath.Join(dir, "fail2ban", file.name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fm, _ := Lookup(file.format)
			p := fm.New(Options{Reference: time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)})
			// Every line is read first, and the parser finished: an event
			// may be handed on after its line (a sendmail lost connection
			// waits for its transaction's from= line), and is checked
			// against the line it names.
			type annotated struct {
				n          int64
				line       string
				want       failJSON
				recognised bool
			}
			var checks []annotated
			byLine := map[int64][]Event{}
			collect := func(e *Event) { byLine[e.Line] = append(byLine[e.Line], *e) }
			var want *failJSON
			sc := bufio.NewScanner(f)
			for n := int64(1); sc.Scan(); n++ {
				line := sc.Text()
				if a, ok := strings.CutPrefix(line, "# failJSON: "); ok {
					want = &failJSON{}
					if err := json.Unmarshal([]byte(a), want); err != nil {
						t.Fatalf("line %d: %v", n, err)
					}
					continue
				}
				if line == "" || line[0] == '#' {
					continue
				}
				recognised := p.Parse([]byte(line), n, collect)
				if want != nil {
					checks = append(checks, annotated{n, line, *want, recognised})
				}
				want = nil
			}
			if f, ok := p.(Finisher); ok {
				f.Finish(collect)
			}
			checked := 0
			for _, c := range checks {
				n, line, w, evs := c.n, c.line, c.want, byLine[c.n]
				checked++
				if why := disagreement(file.name, line); why != "" {
					t.Logf("line %d: not checked: %s", n, why)
					continue
				}
				if !w.Match {
					for _, e := range evs {
						if e.Kind != Accepted && e.Kind != Connect && e.ClientIP.IsValid() {
							t.Errorf("line %d: fail2ban does not match it, but it gave %s\n%s", n, e.AppendJSON(nil), line)
						}
					}
					continue
				}
				if !c.recognised || len(evs) == 0 {
					t.Errorf("line %d: no event (recognised %v)\n%s", n, c.recognised, line)
					continue
				}
				e := evs[len(evs)-1]
				if want, err := netip.ParseAddr(w.Host); err != nil || e.ClientIP != want.Unmap() {
					t.Errorf("line %d: client_ip %v, want %s\n%s", n, e.ClientIP, w.Host, line)
				}
				if w.User != "" && e.SASLUser != w.User {
					t.Errorf("line %d: sasl_user %q, want %q", n, e.SASLUser, w.User)
				}
				if w.Time != "" && !strings.Contains(line, spLoggerStamp) {
					wt, err := time.Parse("2006-01-02T15:04:05", w.Time)
					// fail2ban invents the year; the rest must agree.
					if err == nil && e.Time.UTC().Format("01-02T15:04:05") != wt.Format("01-02T15:04:05") {
						t.Errorf("line %d: time %v, want %s (any year)", n, e.Time, w.Time)
					}
				}
			}
			if checked == 0 {
				t.Error("no annotated line")
			}
		})
	}
}
