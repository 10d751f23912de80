package parsers

import (
	"bytes"
	"time"
)

func init() {
	Register(Format{Name: "sendmail", New: newSendmail, Sniff: sniffSendmail})
}

// sendmail 8 logs a message's envelope in one line, when it has been
// received:
//
//	sm-mta[..]: QID: from=<s@example.org>, size=2262, class=0, nrcpts=1,
//	    msgid=<..>, proto=ESMTP, daemon=MTA, relay=host [192.0.2.1]
//
// and the authenticated user, when there is one, in an earlier line of the
// same queue ID: "QID: AUTH=server, relay=..., authid=user, mech=PLAIN".
// A "from=" line with nrcpts=0 is a transaction the server refused.

// sendmailAuthMax bounds the table of authids waiting for their "from=".
const sendmailAuthMax = 1 << 14

type sendmail struct {
	clock *clock
	file  string
	h     header
	ev    Event
	host  interner
	auth  map[string]sendmailAuth
}

type sendmailAuth struct {
	user string
	seen time.Time
}

func newSendmail(o Options) Parser {
	return &sendmail{clock: newClock(o), file: o.File, auth: make(map[string]sendmailAuth)}
}

func isSendmailProgram(p []byte) bool {
	return hasPrefix(p, "sendmail") || hasPrefix(p, "sm-")
}

func sniffSendmail(line []byte) int {
	var h header
	if !parseHeader(line, newClock(Options{}), &h) || !isSendmailProgram(h.Program) {
		return 0
	}
	return 2
}

func (s *sendmail) Parse(line []byte, lineNo int64, emit func(*Event)) bool {
	if !parseHeader(line, s.clock, &s.h) || !isSendmailProgram(s.h.Program) {
		return false
	}
	qid, rest, ok := queueID(s.h.Message)
	if !ok {
		return false
	}
	switch {
	case hasPrefix(rest, "from="):
		return s.from(qid, rest, lineNo, emit)
	case hasPrefix(rest, "AUTH=server"):
		if u, ok := field(rest, "authid"); ok {
			if len(s.auth) >= sendmailAuthMax {
				s.pruneAuth()
			}
			s.auth[string(qid)] = sendmailAuth{user: string(u), seen: s.h.Time}
		}
		return true
	case hasPrefix(rest, "to="):
		return true
	}
	return false
}

// pruneAuth drops authids whose "from=" never came within an hour; if that
// is not enough, it empties the table.
func (s *sendmail) pruneAuth() {
	cutoff := s.h.Time.Add(-time.Hour)
	for k, a := range s.auth {
		if a.seen.Before(cutoff) {
			delete(s.auth, k)
		}
	}
	if len(s.auth) >= sendmailAuthMax {
		clear(s.auth)
	}
}

func (s *sendmail) from(qid, rest []byte, lineNo int64, emit func(*Event)) bool {
	sizeAt := bytes.Index(rest, []byte(", size="))
	if sizeAt < 0 {
		return false
	}
	auth, hadAuth := s.auth[string(qid)]
	if hadAuth {
		delete(s.auth, string(qid))
	}
	tail := rest[sizeAt+2:]
	nrcpts := intField(tail, "nrcpts")
	if nrcpts == 0 {
		return true // refused: rejects are not accepted messages
	}
	e := &s.ev
	e.Reset()
	e.Time = s.h.Time
	e.MTA = "sendmail"
	e.Kind = Accepted
	e.Host = s.host.get(s.h.Host)
	e.QueueID = string(qid)
	e.Sender = normalizeSender(rest[len("from="):sizeAt])
	e.HasSender = true
	e.Size = intField(tail, "size")
	e.NRcpt = nrcpts
	if hadAuth {
		e.SASLUser = auth.user
	}
	// relay= is the last field; its host part comes from DNS or the
	// client, so only the bracketed address is trusted to be an address.
	if at := bytes.LastIndex(tail, []byte("relay=")); at >= 0 && (at == 0 || tail[at-1] == ' ') {
		relay := tail[at+len("relay="):]
		if c := indexByte(relay, ','); c >= 0 {
			relay = relay[:c]
		}
		if open := indexByte(relay, '['); open >= 0 {
			if end := indexByte(relay[open:], ']'); end > 0 {
				e.ClientIP = parseIP(relay[open+1 : open+end])
				e.ClientHost = string(bytes.TrimSpace(relay[:open]))
			}
		}
	}
	e.File = s.file
	e.Line = lineNo
	emit(e)
	return true
}
