package parsers

import (
	"bytes"
	"net/netip"
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
		if u, ok := sendmailAuthid(rest); ok && qid != nil {
			if len(s.auth) >= sendmailAuthMax {
				s.auth = pruneTable(s.auth, s.h.Time.Add(-time.Hour), func(a sendmailAuth) time.Time { return a.seen })
			}
			s.auth[string(qid)] = sendmailAuth{user: string(u), seen: s.h.Time}
		}
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
	if nrcpts == 0 {
		e.Kind = Rejected // no recipient was taken: the transaction was refused
		e.Reason = "no valid recipients"
	}
	e.Sender = s.strs.sender(v[:sizeAt])
	e.HasSender = true
	e.Size = intField(tail, "size")
	if e.Kind == Accepted {
		e.NRcpt = nrcpts
	}
	if hadAuth {
		e.SASLUser = auth.user
	}
	// relay= is the last field, after the client's msgid=: the last one is
	// sendmail's.
	if relay, ok := relayField(tail); ok {
		host, ip := sendmailRelay(relay)
		if ip.IsValid() {
			e.ClientIP, e.ClientHost = ip, s.strs.get(host)
		}
	}
	emit(e)
	return true
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
