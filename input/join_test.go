package input

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/parsers"
)

// tai is a multilog stamp of second s after a fixed time.
func tai(s float64) string {
	t := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC).Add(time.Duration(s * float64(time.Second)))
	return fmt.Sprintf("@%016x%08x", uint64(t.Unix())+1<<62+10, t.Nanosecond())
}

// TestQmailJoin: read together, qmail-smtpd's log gives qmail-send's
// messages their client where exactly one open session could have forked
// the message's qmail-queue, and a session without a message is a lost
// connection with its duration.
func TestQmailJoin(t *testing.T) {
	dir := t.TempDir()
	smtpd := strings.Join([]string{
		tai(0) + " tcpserver: pid 100 from 192.0.2.10",
		tai(0) + " tcpserver: ok 100 mx:192.0.2.1:25 a.example:192.0.2.10::4001",
		tai(1) + " tcpserver: pid 120 from 2001:db8::20",
		tai(1) + " tcpserver: ok 120 mx:2001:db8::1:25 :2001:db8::20::4002",
		tai(4) + " tcpserver: end 100 status 0",
		tai(5) + " tcpserver: end 120 status 0",
		tai(6) + " tcpserver: ok 130 mx:192.0.2.1:25 :192.0.2.30::4003",
		tai(9) + " tcpserver: end 130 status 256",
	}, "\n") + "\n"
	send := strings.Join([]string{
		tai(0.5) + " new msg 1001",
		tai(0.5) + " info msg 1001: bytes 900 from <a@example.org> qp 105 uid 7791", // only session 100 is open and older
		tai(2) + " info msg 1002: bytes 800 from <b@example.org> qp 125 uid 7791",   // 100 and 120: either
		tai(10) + " info msg 1003: bytes 700 from <c@example.org> qp 140 uid 7791",  // no session open
	}, "\n") + "\n"
	a, b := filepath.Join(dir, "smtpd"), filepath.Join(dir, "send")
	os.WriteFile(a, []byte(smtpd), 0o644)
	os.WriteFile(b, []byte(send), 0o644)
	srcs, errs := OpenSources([]Spec{{Path: a, Format: "qmail"}, {Path: b, Format: "qmail"}}, Options{Location: time.UTC})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	m := NewMerger(srcs)
	defer m.Close()
	var got []string
	for {
		e, _, done := m.Next()
		if e == nil {
			if done {
				break
			}
			continue
		}
		got = append(got, fmt.Sprintf("%s %s %s %s", e.Kind, e.Sender, e.ClientIP, e.Duration))
	}
	want := []string{
		"connect  192.0.2.10 0s",
		"accepted a@example.org 192.0.2.10 0s",
		"connect  2001:db8::20 0s",
		"accepted b@example.org invalid IP 0s",
		"connect  192.0.2.30 0s",
		"lost_connection  192.0.2.30 3s",
		"accepted c@example.org invalid IP 0s",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestQmailJoinAloneSaysNothingOfEnds: qmail-smtpd's log read alone gives
// no lost connection: without qmail-send's, a session's messages are not
// known.
func TestQmailJoinAloneSaysNothingOfEnds(t *testing.T) {
	var j qmailJoin
	c := &parsers.Event{MTA: "qmail", Kind: parsers.Connect, PID: 100}
	end := &parsers.Event{MTA: "qmail", Kind: parsers.SessionEnd, PID: 100, Time: time.Unix(5, 0)}
	if !j.take(c) || j.take(end) {
		t.Error("a session's end was handed on without qmail-send's log")
	}
}
