package input

import (
	"net/netip"
	"time"

	"github.com/bombwatch/bombwatch/parsers"
)

// qmailJoin joins qmail's two logs, read together: qmail-smtpd's, under
// tcpserver, knows the client of each session ("ok P0 … :IP::PORT"), and
// qmail-send's knows each message ("info msg N: … qp P"), whose
// qmail-queue P is a child of its session's qmail-smtpd P0. Events come
// to it in time order (the merger's), so a replay joins what the daemon
// joined.
//
// A message gets its session's client only when exactly one open session
// could have forked its qmail-queue (one with P0 < P): with two, it gets
// none — a wrong address would block an innocent client. A session's end
// is a lost connection, with its duration, when no message could have
// been its; it is nothing when one could, or when no qmail-send line was
// read yet (its log may not be among the inputs). Open sessions are
// forgotten at a restart: messages of a session open across one carry no
// client.
type qmailJoin struct {
	sessions map[int64]*qmailSession
	sawSend  bool // a message of qmail-send's went by
}

type qmailSession struct {
	client  netip.Addr
	host    string
	start   time.Time
	message bool // a message may be this session's
}

// maxSessions bounds the open sessions remembered, and sessionMax how
// long one stays open: tcpserver's end lines can be lost with the log that
// held them, and qmail-smtpd's own timeouts end a session long before.
const (
	maxSessions = 4096
	sessionMax  = time.Hour
)

// take joins e, and reports whether it is handed on: a session's end is
// handed on only as a lost connection.
func (j *qmailJoin) take(e *parsers.Event) bool {
	if e.MTA != "qmail" || e.PID <= 0 {
		return e.Kind != parsers.SessionEnd
	}
	switch e.Kind {
	case parsers.Connect:
		if j.sessions == nil {
			j.sessions = map[int64]*qmailSession{}
		}
		if len(j.sessions) >= maxSessions {
			j.forgetOldest()
		}
		j.sessions[e.PID] = &qmailSession{client: e.ClientIP, host: e.ClientHost, start: e.Time}
	case parsers.Accepted:
		j.sawSend = true
		var only *qmailSession
		n := 0
		for p0, s := range j.sessions {
			if e.Time.Sub(s.start) > sessionMax {
				delete(j.sessions, p0) // its end was not logged, or not read
				continue
			}
			if p0 < e.PID {
				s.message = true
				only = s
				n++
			}
		}
		if n == 1 && !e.ClientIP.IsValid() {
			e.ClientIP, e.ClientHost = only.client, only.host
		}
	case parsers.SessionEnd:
		s := j.sessions[e.PID]
		delete(j.sessions, e.PID)
		if s == nil || s.message || !j.sawSend {
			return false
		}
		e.Kind = parsers.LostConnection
		e.ClientIP, e.ClientHost = s.client, s.host
		e.Duration = e.Time.Sub(s.start)
		if e.Reason == "" {
			e.Reason = "end"
		}
	}
	return true
}

func (j *qmailJoin) forgetOldest() {
	var oldest int64
	var at time.Time
	for p0, s := range j.sessions {
		if at.IsZero() || s.start.Before(at) {
			oldest, at = p0, s.start
		}
	}
	delete(j.sessions, oldest)
}
