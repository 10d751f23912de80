package parsers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var testReference = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

// TestAnnotatedLogs reads testdata/*.log, where a "# want: {json}" line
// holds the event that the next log line completes (without "file" and
// "line") and "# want: none" says it completes none. The format is the file
// name up to its first '-' or '.'.
func TestAnnotatedLogs(t *testing.T) {
	files, err := filepath.Glob("testdata/*.log")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			name := filepath.Base(file)
			name = name[:strings.IndexAny(name, "-.")]
			format, ok := Lookup(name)
			if !ok {
				t.Fatalf("no format %q", name)
			}
			p := format.New(Options{File: file, Reference: testReference})
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var want *string
			wantLine := int64(0)
			checked := 0
			sc := bufio.NewScanner(bytes.NewReader(data))
			for n := int64(1); sc.Scan(); n++ {
				line := sc.Bytes()
				if w, ok := bytes.CutPrefix(line, []byte("# want: ")); ok {
					s := string(w)
					want, wantLine = &s, n+1
					continue
				}
				if len(line) == 0 || line[0] == '#' {
					continue
				}
				var got []string
				p.Parse(line, n, func(e *Event) {
					if e.Line != n {
						t.Errorf("line %d: event says line %d", n, e.Line)
					}
					e.File, e.Line = "", 0
					got = append(got, string(e.AppendJSON(nil)))
				})
				if want == nil || wantLine != n {
					// Lines without an annotation are the ones an event is
					// built from (an smtpd line before its qmgr line): they
					// must complete none.
					if len(got) > 0 {
						t.Errorf("%s:%d: completes %s but has no \"# want:\" line", file, n, got)
					}
					continue
				}
				checked++
				switch {
				case *want == "none" && len(got) != 0:
					t.Errorf("%s:%d: want no event, got %s", file, n, got)
				case *want != "none" && (len(got) != 1 || got[0] != *want):
					t.Errorf("%s:%d:\n got %s\nwant %s", file, n, got, *want)
				}
				want = nil
			}
			if checked == 0 {
				t.Errorf("%s: no annotated line checked", file)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		lines []string
		want  string
	}{
		{[]string{"Nov 20 10:00:01 mx postfix/smtpd[1]: connect from a[192.0.2.1]"}, "postfix"},
		{[]string{"Nov 20 10:00:01 mx smtp-25/smtpd[1]: connect from a[192.0.2.1]", "Nov 20 10:00:01 mx kernel: x"}, "postfix"},
		{[]string{"Nov 20 10:00:01 mx sm-mta[1]: x: from=<a>, size=1"}, "sendmail"},
		{[]string{"@4000000038c3eeb027f41c7c new msg 93869"}, "qmail"},
		{[]string{"Sep  6 07:33:33 sd6 qmail: 1157520813.485077 new msg 1"}, "qmail"},
	}
	for _, tt := range tests {
		var lines [][]byte
		for _, l := range tt.lines {
			lines = append(lines, []byte(l))
		}
		f, ok := Detect(lines)
		if !ok || f.Name != tt.want {
			t.Errorf("Detect(%q) = %q, %v; want %q", tt.lines, f.Name, ok, tt.want)
		}
	}
	if f, ok := Detect([][]byte{[]byte("hello world"), {0, 1, 2}}); ok {
		t.Errorf("Detect(garbage) = %q, want none", f.Name)
	}
}

func TestParseHeader(t *testing.T) {
	ref := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		berlin = time.FixedZone("CET", 3600)
	}
	tests := []struct {
		line    string
		loc     *time.Location
		ok      bool
		time    string
		host    string
		program string
		msg     string
	}{
		{"Nov 23 10:00:00 mx postfix/smtpd[12]: hello", nil, true, "2026-11-23T10:00:00Z", "mx", "postfix/smtpd", "hello"},
		{"Nov 23 10:00:00 mx postfix/smtpd[12]: hello", berlin, true, "2026-11-23T09:00:00Z", "mx", "postfix/smtpd", "hello"},
		{"Nov  3 10:00:00 mx prog: msg: with colon", nil, true, "2026-11-03T10:00:00Z", "mx", "prog", "msg: with colon"},
		{"Nov 3 10:00:00 mx prog[1]:", nil, true, "2026-11-03T10:00:00Z", "mx", "prog", ""},
		{"Dec 31 23:00:00 mx prog[1]: x", nil, true, "2025-12-31T23:00:00Z", "mx", "prog", "x"},
		{"2023-03-15T00:00:06.046710+01:00 helga postfix/anvil[1]: x", nil, true, "2023-03-14T23:00:06.04671Z", "helga", "postfix/anvil", "x"},
		{"2023-03-15T00:00:06Z helga prog: x", nil, true, "2023-03-15T00:00:06Z", "helga", "prog", "x"},
		{"2023-03-15T00:00:06-05:30 h p: x", nil, true, "2023-03-15T05:30:06Z", "h", "p", "x"},
		{"@4000000038c3eeb027f41c7c new msg 1", nil, true, "2000-03-06T17:45:10.670309500Z", "", "", "new msg 1"},
		{"Foo 23 10:00:00 mx p: x", nil, false, "", "", "", ""},
		{"Nov 32 10:00:00 mx p: x", nil, false, "", "", "", ""},
		{"Nov 23 25:00:00 mx p: x", nil, false, "", "", "", ""},
		{"Nov 23 10:00:00 mx", nil, false, "", "", "", ""},
		{"Nov 23 10:00:00 mx prog with space: x", nil, false, "", "", "", ""},
		{"Nov 23 10:00:00 mx prog[12 x", nil, false, "", "", "", ""},
		{"2023-13-15T00:00:06Z h p: x", nil, false, "", "", "", ""},
		{"2023-03-15T00:00:06+01 h p: x", nil, false, "", "", "", ""},
		{"@40000000zzc3eeb027f41c7c x", nil, false, "", "", "", ""},
		{"@4000000038c3eeb0ffffffff x", nil, false, "", "", "", ""},
		{"", nil, false, "", "", "", ""},
	}
	for _, tt := range tests {
		c := newClock(Options{Location: tt.loc, Reference: ref})
		var h header
		ok := parseHeader([]byte(tt.line), c, &h)
		if ok != tt.ok {
			t.Errorf("parseHeader(%q) ok = %v, want %v", tt.line, ok, tt.ok)
			continue
		}
		if !ok {
			continue
		}
		got := h.Time.UTC().Format(time.RFC3339Nano)
		if want, _ := time.Parse(time.RFC3339Nano, tt.time); !h.Time.Equal(want) {
			t.Errorf("parseHeader(%q) time = %s, want %s", tt.line, got, tt.time)
		}
		if string(h.Host) != tt.host || string(h.Program) != tt.program || string(h.Message) != tt.msg {
			t.Errorf("parseHeader(%q) = host %q program %q msg %q; want %q %q %q",
				tt.line, h.Host, h.Program, h.Message, tt.host, tt.program, tt.msg)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{"q\"b\\s", `"q\"b\\s"`},
		{"nl\ncr\rtab\t\x01", `"nl\ncr\rtab\t\u0001"`},
		{"bad\xffutf8", `"bad\ufffdutf8"`},
		{"é<>&", `"é<>&"`},
	}
	for _, tt := range tests {
		if got := string(AppendJSONString(nil, tt.in)); got != tt.want {
			t.Errorf("AppendJSONString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestQueueIsBounded(t *testing.T) {
	p := newPostfix(Options{Reference: testReference}).(*postfix)
	for i := 0; i < postfixQueueMax+1000; i++ {
		line := []byte("Nov 20 10:00:00 mx postfix/smtpd[1]: Q" + itoa(int64(i)) + "ABCD: client=a[192.0.2.1]")
		p.Parse(line, int64(i+1), func(*Event) {})
	}
	if n := p.queue.len(); n > postfixQueueMax {
		t.Errorf("queue holds %d entries, bound is %d", n, postfixQueueMax)
	}
}

// TestHostileLines feeds lines that have broken real parsers: none may
// panic, and none may yield an event with a field it did not have — a
// client, size or sender the line does not hold, a negative count other
// than -1 (not logged), no time, or JSON that does not parse.
func TestHostileLines(t *testing.T) {
	lines := []string{
		"Nov 20 10:00:00 mx postfix/qmgr[1]: ABCDE12345: from=<",
		"Nov 20 10:00:00 mx postfix/qmgr[1]: ABCDE12345: from=<>, size=",
		"Nov 20 10:00:00 mx postfix/smtpd[1]: ABCDE12345: client=[",
		"Nov 20 10:00:00 mx postfix/smtpd[1]: ABCDE12345: client=]x[",
		"Nov 20 10:00:00 mx sm-mta[1]: ABCDE12345: from=<a>, size=1, nrcpts=1, relay=[",
		"Nov 20 10:00:00 mx sm-mta[1]: ABCDE12345: from=, size=",
		"@4000000038c3eeb027f41c7c info msg 1: bytes 99999999999999999999999 from <",
		"@4000000038c3eeb027f41c7c info msg : bytes",
		"Nov 20 10:00:00 mx qmail: 1 info msg 1: bytes 1 from <> qp",
		"Nov 20 10:00:00 mx postfix/qmgr[1]: ABCDE12345: from=<\xff\xfe>, size=-1, nrcpt=x",
		strings.Repeat("A", 1<<20),
		"\x00\x01\x02\r",
	}
	for _, name := range Names() {
		f, _ := Lookup(name)
		p := f.New(Options{Reference: testReference})
		for i, l := range lines {
			p.Parse([]byte(l), int64(i+1), func(e *Event) {
				js := e.AppendJSON(nil)
				switch {
				case !json.Valid(js):
					t.Errorf("%s, line %q: invalid JSON %s", name, l, js)
				case e.Time.IsZero():
					t.Errorf("%s, line %q: an event without a time", name, l)
				case e.Size < -1 || e.NRcpt < -1 || e.UID < -1: // -1: not logged
					t.Errorf("%s, line %q: size %d, nrcpt %d, uid %d", name, l, e.Size, e.NRcpt, e.UID)
				case e.ClientIP.IsValid() && !strings.Contains(l, e.ClientIP.String()):
					t.Errorf("%s, line %q: a client %s the line does not hold", name, l, e.ClientIP)
				case e.Size > 0 && !strings.Contains(l, strconv.FormatInt(e.Size, 10)):
					t.Errorf("%s, line %q: a size %d the line does not hold", name, l, e.Size)
				case e.HasSender && e.Sender != "" && !strings.Contains(strings.ToLower(l), e.Sender):
					t.Errorf("%s, line %q: a sender %q the line does not hold", name, l, e.Sender)
				}
			})
		}
	}
}

func TestShape(t *testing.T) {
	tests := []struct{ line, want string }{
		{"Nov 20 10:00:01 mx postfix/smtpd[12]: connect from a.example[192.0.2.1]", "postfix/smtpd: connect from *[*]"},
		{"Nov 20 10:00:01 mx postfix/smtpd[13]: connect from b.example[198.51.100.7]", "postfix/smtpd: connect from *[*]"},
		{"Nov 20 10:00:01 mx postfix/cleanup[1]: 4F2A1B3C4D: message-id=<x@y>", "postfix/cleanup: QID: message-id=<*>"},
		{"@4000000038c3eeb027f41c7c status: local 0/10 remote 3/20", "status: local N/N remote N/N"},
		{"garbage \x00\xff 12.5", "garbage ?? N"},
	}
	for _, tt := range tests {
		if got := Shape([]byte(tt.line)); got != tt.want {
			t.Errorf("Shape(%q) = %q, want %q", tt.line, got, tt.want)
		}
	}
}

func TestParseIP(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"}, {"0.0.0.0", "0.0.0.0"}, {"255.255.255.255", "255.255.255.255"},
		{"2001:db8::1", "2001:db8::1"}, {"IPv6:2001:DB8::1", "2001:db8::1"}, {"::ffff:192.0.2.1", "192.0.2.1"},
		{"fe80::1%eth0", "fe80::1"}, {`::%"`, "::"},
		{"123.456.789.1", "invalid IP"}, {"01.2.3.4", "invalid IP"}, {"1.2.3", "invalid IP"}, {"1.2.3.4.5", "invalid IP"},
		{"1..2.3", "invalid IP"}, {"", "invalid IP"}, {"a.b.c.d", "invalid IP"}, {"1.2.3.4 ", "invalid IP"},
	}
	for _, tt := range tests {
		if got := parseIP([]byte(tt.in)).String(); got != tt.want {
			t.Errorf("parseIP(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestPostfixCountedSurvivesARestart: a deferred message's accepted event
// is emitted at its first "from=" line only, even when the parser that
// sees the retry is a new one, given what the old one counted.
func TestPostfixCountedSurvivesARestart(t *testing.T) {
	format, _ := Lookup("postfix")
	first := format.New(Options{Reference: testReference})
	lines := []string{
		"Nov 20 10:00:00 mx postfix/smtpd[1]: 4A1B2C3D4E: client=c.example[192.0.2.1]",
		"Nov 20 10:00:01 mx postfix/qmgr[2]: 4A1B2C3D4E: from=<deferred@example.org>, size=100, nrcpt=1 (queue active)",
		"Nov 20 10:00:02 mx postfix/smtpd[1]: 5B1B2C3D4E: client=c.example[192.0.2.1]",
		"Nov 20 10:00:03 mx postfix/qmgr[2]: 5B1B2C3D4E: from=<done@example.org>, size=100, nrcpt=1 (queue active)",
		"Nov 20 10:00:04 mx postfix/qmgr[2]: 5B1B2C3D4E: removed",
	}
	n := 0
	for i, l := range lines {
		first.Parse([]byte(l), int64(i+1), func(*Event) { n++ })
	}
	counted := first.(Resumable).Counted()
	if n != 2 || len(counted) != 1 || counted[0] != "4A1B2C3D4E" {
		t.Fatalf("%d events, counted %v; want 2 and the deferred one", n, counted)
	}
	again := format.New(Options{Reference: testReference})
	again.(Resumable).SetCounted(counted)
	retry := "Nov 20 10:30:01 mx postfix/qmgr[2]: 4A1B2C3D4E: from=<deferred@example.org>, size=100, nrcpt=1 (queue active)"
	again.Parse([]byte(retry), 1, func(e *Event) { t.Errorf("the retry counted again: %s", e.AppendJSON(nil)) })
	fresh := "Nov 20 10:30:02 mx postfix/qmgr[2]: 6C1B2C3D4E: from=<new@example.org>, size=100, nrcpt=1 (queue active)"
	got := 0
	again.Parse([]byte(fresh), 2, func(*Event) { got++ })
	if got != 1 {
		t.Errorf("a new message gave %d events", got)
	}
}

// TestQmailSMTPUIDIsNoLocalUser: the uid on messages from three or more
// sender domains is qmail-smtpd's (qmaild's), and is no uid from then on;
// a local user's uid, one domain however many messages, stays.
func TestQmailSMTPUIDIsNoLocalUser(t *testing.T) {
	p := newQmail(Options{})
	var uids []int64
	emit := func(e *Event) { uids = append(uids, e.UID) }
	lines := []string{
		"@400000006920a1b0000000aa info msg 1: bytes 100 from <a@one.example> qp 10 uid 7791",
		"@400000006920a1b1000000aa info msg 2: bytes 100 from <b@two.example> qp 11 uid 7791",
		"@400000006920a1b2000000aa info msg 3: bytes 100 from <cron@mx.example> qp 12 uid 1001",
		"@400000006920a1b3000000aa info msg 4: bytes 100 from <c@three.example> qp 13 uid 7791",
		"@400000006920a1b4000000aa info msg 5: bytes 100 from <d@one.example> qp 14 uid 7791",
		"@400000006920a1b5000000aa info msg 6: bytes 100 from <root@mx.example> qp 15 uid 1001",
		"@400000006920a1b6000000aa info msg 7: bytes 100 from <cron@mx.example> qp 16 uid 1001",
	}
	for i, l := range lines {
		p.Parse([]byte(l), int64(i+1), emit)
	}
	want := []int64{7791, 7791, 1001, -1, -1, 1001, 1001}
	if !slices.Equal(uids, want) {
		t.Errorf("uids %v, want %v", uids, want)
	}
}

// TestSendmailTransactions: what sendmail's lines of one transaction
// make together — each refused recipient one rejection with the client of
// the from= line, and held lines handed on once the deciding line is
// overdue.
func TestSendmailTransactions(t *testing.T) {
	lines := []string{
		"Nov 20 11:00:08 mx sm-mta[412]: 5AKB00kk000412: <a@example.org>... User unknown",
		"Nov 20 11:00:08 mx sm-mta[412]: 5AKB00kk000412: <b@example.org>... User unknown",
		"Nov 20 11:00:09 mx sm-mta[412]: 5AKB00kk000412: from=<probe@spam.example>, size=0, class=0, nrcpts=0, proto=ESMTP, daemon=MTA, relay=[192.0.2.52]",
		// A refusal whose from= line never comes, and a from= without
		// msgid= no delivery follows: the one is handed on later, the
		// other is no message.
		"Nov 20 11:01:00 mx sm-mta[413]: 5AKB00ll000413: <c@example.org>... User unknown",
		"Nov 20 11:01:00 mx sm-mta[414]: 5AKB00mm000414: from=<never@example.com>, size=0, class=0, nrcpts=1, proto=ESMTP, daemon=MTA, relay=[192.0.2.54]",
		"Nov 20 11:30:00 mx sm-mta[415]: 5AKB00nn000415: from=<ok@example.com>, size=10, class=0, nrcpts=1, msgid=<9@example.com>, proto=ESMTP, daemon=MTA, relay=[192.0.2.55]",
	}
	p := newSendmail(Options{Reference: testReference})
	var got []string
	for i, l := range lines {
		p.Parse([]byte(l), int64(i+1), func(e *Event) {
			got = append(got, fmt.Sprintf("%d %s %s %s %s", e.Line, e.Kind, e.QueueID, e.ClientIP, e.Sender))
		})
	}
	want := []string{
		"3 rejected 5AKB00kk000412 192.0.2.52 probe@spam.example",
		"3 rejected 5AKB00kk000412 192.0.2.52 probe@spam.example",
		"6 rejected 5AKB00ll000413 invalid IP ",
		"6 accepted 5AKB00nn000415 192.0.2.55 ok@example.com",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
