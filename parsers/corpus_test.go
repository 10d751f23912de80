package parsers

import (
	"bufio"
	"os"
	"path/filepath"
	"testing"

	"github.com/bombwatch/bombwatch/internal/corpus"
)

// TestCorpus parses the real logs of ../shared/corpus: every file must be
// detected as its MTA, and give exactly as many accepted messages as the
// log holds (counted by hand with grep, see SOURCES.md for the files).
func TestCorpus(t *testing.T) {
	dir := corpus.Dir(t)
	tests := []struct {
		file     string
		format   string
		accepted int
	}{
		{"postfix-logsums/mail.log", "postfix", 120},
		{"parse-syslog-mail/postfix-plain.log", "postfix", 35},
		{"postfix_exporter/mail.log", "postfix", 1},
		{"fail2ban/postfix", "postfix", 0},
		// 58 messages submitted through the MSP, each also handed to the MTA
		// from loopback: counted once each.
		{"parse-syslog-mail/sendmail-plain.log", "sendmail", 58},
		{"parse-syslog-mail/sendmail-done.log", "sendmail", 1},
		{"parse-syslog-mail/sendmail-custom-dsn.log", "sendmail", 0},
		{"parse-syslog-mail/sendmail-ruleset.log", "sendmail", 0},
		{"fail2ban/sendmail-reject", "sendmail", 0},
		{"fail2ban/sendmail-auth", "sendmail", 0},
		{"qmail-log-parser/qmail-send", "qmail", 277},
		{"qmail_log/one.log", "qmail", 3},
		{"qmail_log/two.log", "qmail", 1},
		{"lnav/logfile_tai64n.0", "qmail", 0},
		{"fail2ban/qmail", "qmail", 0},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join(dir, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var lines [][]byte
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				lines = append(lines, append([]byte(nil), sc.Bytes()...))
			}
			head := lines
			if len(head) > 50 {
				head = head[:50]
			}
			format, ok := Detect(head)
			if !ok || format.Name != tt.format {
				t.Fatalf("detected %q (%v), want %q", format.Name, ok, tt.format)
			}
			p := format.New(Options{File: tt.file, Reference: testReference})
			accepted := 0
			for i, l := range lines {
				p.Parse(l, int64(i+1), func(e *Event) {
					if e.Kind == Accepted {
						accepted++
					}
					if e.Time.IsZero() || e.Kind == Accepted && !e.HasSender || e.Line != int64(i+1) {
						t.Errorf("line %d: incomplete event %s", i+1, e.AppendJSON(nil))
					}
				})
			}
			if accepted != tt.accepted {
				t.Errorf("accepted = %d, want %d", accepted, tt.accepted)
			}
		})
	}
}
