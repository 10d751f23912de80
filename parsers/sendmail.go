package parsers

import (
	"bytes"
	"net/netip"
	"strings"
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
// same queue ID ("QID: AUTH=server, relay=..., authid=user, mech=PLAIN"), or
// of the same process and client without a queue ID: sendmail 8.17 logs
// AUTH once per session, and a session may carry several messages.
//
// What a transaction was is known from all its lines (see held):
//   - A message is accepted when it was queued: its "from=" line has a
//     msgid=, or a delivery ("to=") of its queue ID follows. One the client
//     abandoned ("collect: ... unexpected close", "lost input channel ...
//     after data") is a lost connection, with its sender and size.
//   - Each refused recipient is one rejection: "ruleset=check_rcpt ...
//     reject=" and "<addr>... User unknown" alike, with the client the
//     transaction's "from=" line names; that line, nrcpts=0, adds none.
//   - A message submitted on the machine passes twice: the MSP
//     ("from=root, ..., relay=root@localhost") hands it to the MTA
//     ("from=<root@host>, ..., relay=localhost [127.0.0.1]"), both with its
//     msgid. It is one accepted message, counted at the MSP's delivery line,
//     which names the user's uid (ctladdr=root (0/0)), with the sender as
//     the MTA qualified it.
//
// Clients appear as "host [ip]", "[ip]" or "host [ip] (may be forged)": in
// relay= fields and before the messages about a session. Only the bracketed
// address is taken, and only when it parses as one.

// sendmailAuthMax bounds the table of authids waiting for their "from=".
const sendmailAuthMax = 1 << 14

type sendmail struct {
	clock *clock
	file  string
	h     header
	ev    Event
	host  interner
	strs  strtab
	auth  map[string]sendmailAuth // by queue ID
	// sessions are AUTH lines without a queue ID, by process ID: the
	// user is given to that process's messages from the same client.
	sessions map[string]sendmailAuth
	held     map[string]*sendmailHeld // by queue ID
	// msp are local submissions waiting for the MSP's delivery line, by
	// msgid and by the MSP's queue ID; counted are the msgids of those
	// counted, whose MTA copy is not.
	msp     map[string]*sendmailHeld
	mspQIDs map[string]string
	counted map[string]time.Time
	refused map[string]time.Time // queue IDs with a ruleset rejection
	swept   time.Time
}

type sendmailAuth struct {
	user string
	ip   netip.Addr // the client's, for a session's AUTH
	seen time.Time
}

// sendmailHeld is what a transaction's lines said before the line that
// decides what it was.
type sendmailHeld struct {
	events   []Event // rejected recipients, a lost connection
	accepted *Event  // a "from=" without msgid=, until a delivery
	msgid    string  // a local submission's
	seen     time.Time
}

// sendmailHoldFor is how long a transaction's lines wait for the one that
// decides: then its rejections and lost connection are handed on as they
// are, and a "from=" no delivery followed is dropped.
const sendmailHoldFor = 10 * time.Minute

func newSendmail(o Options) Parser {
	return &sendmail{clock: newClock(o), file: o.File, auth: make(map[string]sendmailAuth),
		sessions: map[string]sendmailAuth{}, held: map[string]*sendmailHeld{}, msp: map[string]*sendmailHeld{},
		mspQIDs: map[string]string{}, counted: map[string]time.Time{}, refused: map[string]time.Time{}}
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
	if !parseHeader(line, s.clock, &s.h) {
		return false
	}
	return s.parseMessage(&s.h, lineNo, emit)
}

// sendmailQuiet are messages understood that carry no event.
var sendmailQuiet = []string{"to=", "done", "DSN: ", "postmaster notify: ", "sender notify: ", "return to sender: ",
	"clone: ", "collect: ", "starting daemon", "accepting connections", "rejecting connections", "STARTTLS",
	"alias database", "grew WorkList", "SYSERR", "Authentication-Warning: ", "discarded", "Milter", "milter",
	"message size ", "<", "Syntax error in mailbox address", "Fixed MIME ", "SMTP outgoing connect"}

func (s *sendmail) parseMessage(h *header, lineNo int64, emit func(*Event)) bool {
	s.h = *h
	if !isSendmailProgram(h.Program) {
		return false
	}
	if h.Time.Sub(s.swept) > time.Minute {
		s.sweep(lineNo, emit)
	}
	qid, rest, ok := queueID(h.Message)
	if !ok {
		rest = h.Message // ruleset=check_relay and daemon lines come without one
	} else if _, r, ok := queueID(rest); ok {
		rest = r // "QID: NEWQID: DSN: ...": a notice about a message, queued as another
	}
	switch {
	case hasPrefix(rest, "from="):
		return s.from(qid, rest, lineNo, emit)
	case hasPrefix(rest, "AUTH=server"):
		u, ok := sendmailAuthid(rest)
		switch {
		case ok && qid != nil:
			if len(s.auth) >= sendmailAuthMax {
				s.auth = pruneTable(s.auth, s.h.Time.Add(-time.Hour), func(a sendmailAuth) time.Time { return a.seen })
			}
			s.auth[string(qid)] = sendmailAuth{user: string(u), seen: s.h.Time}
		case ok && len(h.PID) > 0:
			// "AUTH=server, relay=host [ip], authid=...": the relay is
			// sendmail's, before the client's authid.
			v, _ := cutPrefix(rest, "AUTH=server, relay=")
			if i := bytes.Index(v, []byte(", authid=")); i >= 0 {
				if _, ip := sendmailRelay(v[:i]); ip.IsValid() {
					if len(s.sessions) >= sendmailAuthMax {
						s.sessions = pruneTable(s.sessions, s.h.Time.Add(-time.Hour), func(a sendmailAuth) time.Time { return a.seen })
					}
					s.sessions[string(h.PID)] = sendmailAuth{user: string(u), ip: ip, seen: s.h.Time}
				}
			}
		}
		return true
	case hasPrefix(rest, "to="):
		return s.delivery(qid, rest, lineNo, emit)
	case hasPrefix(rest, "collect: ") && bytes.HasSuffix(rest, []byte("unexpected close")):
		if qid != nil {
			e := s.event(LostConnection, qid, lineNo)
			e.Reason = "data"
			s.abandoned(qid, e, emit)
		}
		return true
	case qid != nil && hasPrefix(rest, "<") && bytes.HasSuffix(rest, []byte("... User unknown")):
		// "<addr>... User unknown": a refused recipient, whose client the
		// transaction's from= line names.
		e := s.event(Rejected, qid, lineNo)
		e.Reason = "User unknown"
		s.hold(qid).events = append(s.hold(qid).events, *e)
		return true
	case hasPrefix(rest, "ruleset=check_"):
		return s.ruleset(qid, rest, lineNo, emit)
	case hasPrefix(rest, "AUTH failure ("):
		return s.authFailure(qid, rest, lineNo, emit)
	case hasPrefix(rest, "rejecting commands from "):
		// "rejecting commands from host [ip] due to pre-greeting traffic after 0 seconds"
		v := rest[len("rejecting commands from "):]
		if i := bytes.Index(v, []byte(" due to ")); i >= 0 {
			reason := v[i+len(" due to "):]
			if j := bytes.Index(reason, []byte(" after ")); j >= 0 {
				reason = reason[:j]
			}
			return s.client(Rejected, qid, v[:i], s.strs.reason(reason), lineNo, emit)
		}
	case hasPrefix(rest, "lost input channel from "):
		// "lost input channel from host [ip] to MTA after rcpt"
		v := rest[len("lost input channel from "):]
		reason := "lost input channel"
		if i := bytes.LastIndex(v, []byte(" after ")); i >= 0 {
			reason = string(v[i+len(" after "):])
		}
		if i := bytes.Index(v, []byte(" to ")); i >= 0 {
			v = v[:i]
		}
		if qid != nil {
			// In a transaction: its from= line, which follows, gives
			// the sender and size.
			host, ip := sendmailClient(v)
			if !ip.IsValid() {
				return false
			}
			e := s.event(LostConnection, qid, lineNo)
			e.ClientIP, e.ClientHost, e.Reason = ip, string(host), reason
			s.abandoned(qid, e, emit)
			return true
		}
		return s.client(LostConnection, qid, v, reason, lineNo, emit)
	case hasPrefix(rest, "timeout waiting for input from "):
		v := rest[len("timeout waiting for input from "):]
		if i := bytes.Index(v, []byte(" during ")); i >= 0 {
			v = v[:i]
		}
		return s.client(LostConnection, qid, v, "timeout", lineNo, emit)
	}
	// "host [ip] (may be forged): possible SMTP attack: command=AUTH, count=5"
	if i := bytes.Index(rest, []byte(": possible SMTP attack: ")); i >= 0 {
		text := rest[i+2:]
		kind := Rejected
		if bytes.Contains(text, []byte("command=AUTH,")) {
			kind = AuthFailed
		}
		return s.client(kind, qid, rest[:i], s.strs.reason(text), lineNo, emit)
	}
	// "host [ip] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA"
	if i := bytes.Index(rest, []byte(" did not issue ")); i >= 0 {
		end := bytes.Index(rest[i:], []byte(" during "))
		if end < 0 {
			end = len(rest) - i
		}
		return s.client(LostConnection, qid, rest[:i], s.strs.reason(rest[i+1:i+end]), lineNo, emit)
	}
	// "host [ip]: EXPN root [rejected]", "[ip]: vrfy info [rejected]"
	if bytes.HasSuffix(rest, []byte(" [rejected]")) {
		if i := bytes.Index(rest, []byte("]: ")); i >= 0 {
			cmd := rest[i+3:]
			if sp := indexByte(cmd, ' '); sp > 0 {
				cmd = cmd[:sp]
			}
			return s.client(Rejected, qid, rest[:i+1], string(bytes.ToUpper(cmd))+" rejected", lineNo, emit)
		}
	}
	return hasAnyPrefix(rest, sendmailQuiet)
}

// sendmailAuthid reads the user of "AUTH=server, relay=host [ip],
// authid=u, mech=PLAIN, bits=0": up to the last ", mech=", so that a name
// with a comma or a space is kept whole rather than cut to another's.
func sendmailAuthid(rest []byte) ([]byte, bool) {
	i := bytes.Index(rest, []byte(", authid="))
	if i < 0 {
		return nil, false
	}
	v := rest[i+len(", authid="):]
	if m := bytes.LastIndex(v, []byte(", mech=")); m >= 0 {
		v = v[:m]
	}
	return v, len(v) > 0
}

// sendmailClient reads "host [ip]", "[ip]" or "host [ip] (may be forged)":
// the address is the last bracketed one.
func sendmailClient(v []byte) (host []byte, ip netip.Addr) {
	v = bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" (may be forged)"))
	open := bytes.LastIndexByte(v, '[')
	if open < 0 {
		return nil, netip.Addr{}
	}
	end := indexByte(v[open:], ']')
	if end < 0 {
		return nil, netip.Addr{}
	}
	return bytes.TrimSpace(v[:open]), parseIP(v[open+1 : open+end])
}

// client emits an event about the client in v.
func (s *sendmail) client(kind Kind, qid, v []byte, reason string, lineNo int64, emit func(*Event)) bool {
	host, ip := sendmailClient(v)
	if !ip.IsValid() {
		return false
	}
	e := s.event(kind, qid, lineNo)
	e.ClientIP, e.ClientHost = ip, string(host)
	e.Reason = reason
	emit(e)
	return true
}

func (s *sendmail) event(kind Kind, qid []byte, lineNo int64) *Event {
	e := &s.ev
	e.Reset()
	e.Time = s.h.Time
	e.MTA = "sendmail"
	e.Kind = kind
	e.Host = s.host.get(s.h.Host)
	e.QueueID = MakeQID(qid)
	e.File = s.file
	e.Line = lineNo
	return e
}

// relayField returns the value of the last "relay=" field before limit (or
// the end), up to the next ", " that starts another field.
func relayField(b []byte) ([]byte, bool) {
	at := bytes.LastIndex(b, []byte("relay="))
	if at < 0 || (at > 0 && b[at-1] != ' ') {
		return nil, false
	}
	v := b[at+len("relay="):]
	if c := bytes.Index(v, []byte(", ")); c >= 0 {
		v = v[:c]
	}
	return v, true
}

func (s *sendmail) from(qid, rest []byte, lineNo int64, emit func(*Event)) bool {
	// The sender is as the client wrote it: a quoted local part such as
	// "x, size=1, class=0, nrcpts=0"@spam.example must not be taken for
	// the fields sendmail writes after it.
	v := rest[len("from="):]
	sizeAt := sendmailFieldAt(v, ", size=")
	if sizeAt < 0 || qid == nil {
		return false
	}
	tail := v[sizeAt+2:]
	if !sendmailCounts(tail) {
		return false
	}
	auth, hadAuth := s.auth[string(qid)]
	if hadAuth {
		delete(s.auth, string(qid))
	}
	nrcpts := intField(tail, "nrcpts")
	e := s.event(Accepted, qid, lineNo)
	e.Sender = s.strs.sender(v[:sizeAt])
	e.HasSender = true
	e.Size = intField(tail, "size")
	e.NRcpt = nrcpts
	// relay= is the last field, after the client's msgid=: the last one is
	// sendmail's.
	relay, hasRelay := relayField(tail)
	if hasRelay {
		host, ip := sendmailRelay(relay)
		if ip.IsValid() {
			e.ClientIP, e.ClientHost = ip, s.strs.get(host)
		}
	}
	if hadAuth {
		e.SASLUser = auth.user
	} else if a, ok := s.sessions[string(s.h.PID)]; ok && e.ClientIP.IsValid() && a.ip == e.ClientIP && s.h.Time.Sub(a.seen) <= time.Hour {
		e.SASLUser = a.user
		a.seen = s.h.Time
		s.sessions[string(s.h.PID)] = a
	}
	msgid := sendmailMsgid(tail)
	held := s.held[string(qid)]
	delete(s.held, string(qid))
	switch {
	case hasRelay && !bytes.Contains(relay, []byte("[")) && msgid != nil:
		// The MSP: counted at its delivery line, which names the uid.
		s.trimMSP()
		id := string(msgid)
		m := &sendmailHeld{accepted: new(Event), msgid: id, seen: s.h.Time}
		*m.accepted = *e
		s.msp[id], s.mspQIDs[string(qid)] = m, id
		return true
	case e.ClientIP.IsLoopback() && msgid != nil && (s.msp[string(msgid)] != nil || !s.counted[string(msgid)].IsZero()):
		// The MTA's copy of a local submission: its sender is the
		// qualified one; the message is counted once, by the MSP's line.
		if m := s.msp[string(msgid)]; m != nil {
			m.accepted.Sender = e.Sender
		}
		return true
	}
	refused := !s.refused[string(qid)].IsZero()
	delete(s.refused, string(qid))
	if held != nil {
		lost := false
		for i := range held.events {
			h := &held.events[i]
			if !h.ClientIP.IsValid() {
				h.ClientIP, h.ClientHost = e.ClientIP, e.ClientHost
			}
			if h.Kind == LostConnection {
				lost = true
				h.Sender, h.HasSender, h.Size, h.SASLUser = e.Sender, true, e.Size, e.SASLUser
			} else {
				refused = true
				h.Sender, h.HasSender = e.Sender, true
			}
			h.Line = lineNo
			emit(h)
		}
		if lost {
			return true // abandoned: not queued
		}
	}
	switch {
	case nrcpts == 0 && refused:
		return true // each refused recipient was counted
	case nrcpts == 0:
		// Refused in a way no line of its own said.
		e.Kind, e.Reason, e.NRcpt = Rejected, "no valid recipients", -1
	case msgid == nil:
		// Queued only if a delivery follows.
		h := s.hold(qid)
		h.accepted = new(Event)
		*h.accepted = *e
		return true
	}
	emit(e)
	return true
}

// sendmailMsgid reads the msgid= field of a from= line's tail, nil when it
// has none.
func sendmailMsgid(tail []byte) []byte {
	i := sendmailFieldAt(tail, ", msgid=")
	if i < 0 {
		return nil
	}
	v := tail[i+len(", msgid="):]
	if end := sendmailFieldAt(v, ", "); end >= 0 {
		v = v[:end]
	}
	if len(v) == 0 {
		return nil
	}
	return v
}

// hold returns what is held for a queue ID, made when there is none.
func (s *sendmail) hold(qid []byte) *sendmailHeld {
	h := s.held[string(qid)]
	if h == nil {
		if len(s.held) >= sendmailAuthMax {
			// A full table: the oldest transactions are forgotten.
			s.held = pruneTable(s.held, s.h.Time.Add(-sendmailHoldFor), func(h *sendmailHeld) time.Time { return h.seen })
		}
		h = &sendmailHeld{seen: s.h.Time}
		s.held[string(qid)] = h
	}
	return h
}

// abandoned handles a transaction the client left: a from= waiting for
// its delivery becomes a lost connection with its sender and size; else
// the lost connection waits for the from= line.
func (s *sendmail) abandoned(qid []byte, e *Event, emit func(*Event)) {
	h := s.held[string(qid)]
	if h != nil && h.accepted != nil {
		a := h.accepted
		e.Sender, e.HasSender, e.Size, e.SASLUser = a.Sender, a.HasSender, a.Size, a.SASLUser
		if !e.ClientIP.IsValid() {
			e.ClientIP, e.ClientHost = a.ClientIP, a.ClientHost
		}
		delete(s.held, string(qid))
		emit(e)
		return
	}
	h = s.hold(qid)
	h.events = append(h.events, *e)
}

// delivery reads a "to=" line: the delivery that says a message was
// queued, and the MSP's, which counts a local submission.
func (s *sendmail) delivery(qid, rest []byte, lineNo int64, emit func(*Event)) bool {
	if qid == nil {
		return true
	}
	if msgid, ok := s.mspQIDs[string(qid)]; ok {
		delete(s.mspQIDs, string(qid))
		m := s.msp[msgid]
		delete(s.msp, msgid)
		if m == nil {
			return true
		}
		e := m.accepted
		s.qualify(e)
		// "ctladdr=root (0/0)": the uid of the user who submitted it.
		if i := bytes.Index(rest, []byte(", ctladdr=")); i >= 0 {
			c := rest[i+len(", ctladdr="):]
			if open := indexByte(c, '('); open >= 0 {
				if uid, n := leadingInt(c[open+1:]); n > 0 && open+1+n < len(c) && c[open+1+n] == '/' {
					e.UID = uid
				}
			}
		}
		e.Line, e.File = lineNo, s.file
		s.counted[msgid] = s.h.Time
		emit(e)
		return true
	}
	if h := s.held[string(qid)]; h != nil && h.accepted != nil {
		delete(s.held, string(qid))
		h.accepted.Line = lineNo
		for i := range h.events {
			h.events[i].Line = lineNo
			emit(&h.events[i])
		}
		emit(h.accepted)
	}
	return true
}

// Finish hands on, at the end of a finished log, the rejections and lost
// connections whose from= line did not come, and the local submissions
// whose MSP delivery line did not (without their uid).
func (s *sendmail) Finish(emit func(*Event)) {
	for q, h := range s.held {
		for i := range h.events {
			emit(&h.events[i])
		}
		delete(s.held, q)
	}
	for id, m := range s.msp {
		s.qualify(m.accepted)
		emit(m.accepted)
		delete(s.msp, id)
	}
	clear(s.mspQIDs)
}

// qualify gives a local submission's unqualified sender the host's name,
// as sendmail qualifies it, where the MTA's copy did not say it.
func (s *sendmail) qualify(e *Event) {
	if e.Sender != "" && strings.IndexByte(e.Sender, '@') < 0 {
		e.Sender += "@" + string(bytes.ToLower(s.h.Host))
	}
}

// trimMSP bounds the local submissions remembered.
func (s *sendmail) trimMSP() {
	if len(s.msp) >= sendmailAuthMax {
		s.msp = pruneTable(s.msp, s.h.Time.Add(-sendmailHoldFor), func(m *sendmailHeld) time.Time { return m.seen })
		for q, id := range s.mspQIDs {
			if s.msp[id] == nil {
				delete(s.mspQIDs, q)
			}
		}
	}
	if len(s.counted) >= sendmailAuthMax {
		s.counted = pruneTable(s.counted, s.h.Time.Add(-time.Hour), func(t time.Time) time.Time { return t })
	}
}

// sweep ends the transactions whose deciding line did not come within
// sendmailHoldFor: their rejections and lost connection are handed on as
// they are (on the line being read), a from= no delivery followed is not
// a message.
func (s *sendmail) sweep(lineNo int64, emit func(*Event)) {
	s.swept = s.h.Time
	cutoff := s.h.Time.Add(-sendmailHoldFor)
	for q, h := range s.held {
		if !h.seen.Before(cutoff) {
			continue
		}
		delete(s.held, q)
		for i := range h.events {
			h.events[i].Line = lineNo
			emit(&h.events[i])
		}
	}
	for q, t := range s.refused {
		if t.Before(cutoff) {
			delete(s.refused, q)
		}
	}
}

// sendmailCounts reports whether b starts as sendmail writes the numbers
// after the sender: "size=N, class=N, [pri=N, ]nrcpts=N".
func sendmailCounts(b []byte) bool {
	for _, name := range []string{"size=", ", class=", ", pri=", ", nrcpts="} {
		rest, ok := cutPrefix(b, name)
		if !ok {
			if name == ", pri=" {
				continue
			}
			return false
		}
		if len(rest) > 0 && rest[0] == '-' {
			rest = rest[1:]
		}
		_, n := leadingInt(rest)
		if n == 0 {
			return false
		}
		b = rest[n:]
	}
	return len(b) == 0 || b[0] == ','
}

// sendmailFieldAt returns the index of the first sep in v that stands
// outside quotes and angle brackets, or -1. sendmail logs addresses as the
// client wrote them, and a quoted local part or a bracketed address may
// hold any field separator of its own.
func sendmailFieldAt(v []byte, sep string) int {
	quoted, depth := false, 0
	for i := 0; i < len(v); i++ {
		// Most bytes are none of the few that matter: skipped a table
		// lookup each, not five comparisons.
		for i < len(v) && !fieldStop[v[i]] && v[i] != sep[0] {
			i++
		}
		if i == len(v) {
			break
		}
		switch c := v[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			depth++
		case c == '>':
			if depth > 0 {
				depth--
			}
		case depth == 0 && c == sep[0] && hasPrefix(v[i:], sep):
			return i
		}
	}
	return -1
}

// ruleset reads "ruleset=check_rcpt, arg1=<a>, relay=host [ip], reject=550
// 5.7.1 <a>... Relaying denied". arg1 is the sender for check_mail. arg1
// (and arg2) are the client's text, logged verbatim, and so is the reject
// text, which quotes them: relay= is the first one outside quotes and
// brackets, and its value must read as sendmail writes a client.
func (s *sendmail) ruleset(qid, rest []byte, lineNo int64, emit func(*Event)) bool {
	name := rest[len("ruleset="):]
	if c := indexByte(name, ','); c >= 0 {
		name = name[:c]
	}
	args := rest[len("ruleset=")+len(name):]
	relayAt := sendmailFieldAt(args, ", relay=")
	if relayAt < 0 {
		return hasPrefix(rest, "ruleset=check_") // a ruleset line without a verdict: noted
	}
	after := args[relayAt+len(", relay="):]
	rejectAt := bytes.Index(after, []byte(", reject="))
	if rejectAt < 0 {
		return true // quarantine= or discard: no rejection
	}
	// An address that does not parse (logs hold "[123.456.789.1]") leaves
	// the event without a client: the rejection still happened.
	host, ip := sendmailRelay(after[:rejectAt])
	if string(name) == "check_relay" && ip.IsValid() {
		// arg2 is the address sendmail looked up: it must be the relay's.
		if a2 := sendmailFieldAt(args, ", arg2="); a2 < 0 || a2 > relayAt ||
			parseIP(args[a2+len(", arg2="):relayAt]) != ip {
			ip, host = netip.Addr{}, nil
		}
	}
	e := s.event(Rejected, qid, lineNo)
	if ip.IsValid() {
		e.ClientIP, e.ClientHost = ip, string(host)
	}
	if string(name) == "check_mail" {
		if a, ok := cutPrefix(args, ", arg1="); ok {
			if end := sendmailFieldAt(a, ", "); end >= 0 && end == relayAt-len(", arg1=") {
				e.Sender, e.HasSender = normalizeSender(a[:end]), true
			}
		}
	}
	e.Reason = s.strs.reason(name, after[rejectAt+len(", reject="):])
	if qid != nil && string(name) == "check_rcpt" {
		if len(s.refused) >= sendmailAuthMax {
			s.refused = pruneTable(s.refused, s.h.Time.Add(-sendmailHoldFor), func(t time.Time) time.Time { return t })
		}
		s.refused[string(qid)] = s.h.Time
	}
	emit(e)
	return true
}

// sendmailRelay reads a relay= value as sendmail writes a client: "host
// [ip]", "[ip]" or "host [ip] (may be forged)", with a host name of
// letters, digits, dots, hyphens and underscores. Anything else gives no
// client.
func sendmailRelay(v []byte) (host []byte, ip netip.Addr) {
	v = bytes.TrimSuffix(v, []byte(" (may be forged)"))
	if len(v) < 3 || v[len(v)-1] != ']' {
		return nil, netip.Addr{}
	}
	open := bytes.LastIndexByte(v, '[')
	if open < 0 {
		return nil, netip.Addr{}
	}
	host = v[:open]
	if len(host) > 0 {
		if host[len(host)-1] != ' ' {
			return nil, netip.Addr{}
		}
		host = host[:len(host)-1]
		for _, c := range host {
			if !isHostByte(c) {
				return nil, netip.Addr{}
			}
		}
	}
	return host, parseIP(v[open+1 : len(v)-1])
}

// fieldStop are the bytes sendmailFieldAt stops at, but its separator's.
var fieldStop = [256]bool{'"': true, '\\': true, '<': true, '>': true}

func isHostByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c) || c == '.' || c == '-' || c == '_'
}

// authFailure reads "AUTH failure (LOGIN): authentication failure (-13)
// SASL(-13): ..., user=u, relay=host [ip]". The user name is the client's
// and may hold ", relay=[...]": the real relay is the last.
func (s *sendmail) authFailure(qid, rest []byte, lineNo int64, emit func(*Event)) bool {
	relayAt := bytes.LastIndex(rest, []byte(", relay="))
	if relayAt < 0 {
		return false
	}
	host, ip := sendmailRelay(rest[relayAt+len(", relay="):])
	if !ip.IsValid() {
		return false
	}
	e := s.event(AuthFailed, qid, lineNo)
	e.ClientIP, e.ClientHost = ip, string(host)
	text := rest[:relayAt]
	// The reason before user= is SASL's; the user name after it is the
	// client's and may hold ", user=" of its own: the first is sendmail's.
	if u := bytes.Index(text, []byte(", user=")); u >= 0 {
		e.SASLUser = string(text[u+len(", user="):])
		text = text[:u]
	}
	// "AUTH failure (LOGIN): authentication failure (-13) SASL(-13): ..."
	// is reason enough up to the code.
	if j := bytes.Index(text, []byte("): ")); j >= 0 {
		if end := bytes.Index(text[j+3:], []byte(" (")); end >= 0 {
			text = text[:j+3+end]
		}
	}
	e.Reason = s.strs.reason(text)
	emit(e)
	return true
}
