package parsers

import (
	"bytes"
	"net/netip"
	"strconv"
)

func init() {
	Register(Format{Name: "qmail", New: newQmail, Sniff: sniffQmail})
}

// qmail-send logs a message's envelope when it enters the queue:
//
//	@4000000038c3eeb027f6b0a4 info msg 93869: bytes 2343 from <dave@sill.org> qp 18695 uid 49491
//
// under multilog (TAI64N stamps, no host or program), or through splogger to
// syslog with a decimal stamp after the program: "host qmail: 1157520813.485077
// info msg ...". The recipients are only known later, one "starting
// delivery" line each, so the accepted event carries no nrcpt.
//
// qmail-smtpd runs under tcpserver, whose lines give the connections:
//
//	tcpserver: pid 26162 from 194.206.24.40
//	tcpserver: ok 26162 mx.example.net:209.114.200.128:25 :194.206.24.40::1521
//	tcpserver: deny 26163 mx.example.net:209.114.200.128:25 :192.0.2.1::1522
//	tcpserver: end 26162 status 0
//
// ucspi-tcp6 writes IPv6 clients as "ok 26164 mx:::1:25 host:2001:db8::1::1523".
// A message's qmail-queue is a child of its session's qmail-smtpd, and
// qmail-send names its pid (qp): input's merger joins the two logs by it
// (see input.Merger), here each line only says what it is about (PID).
//
// and rblsmtpd, in front of qmail-smtpd, its rejections:
// "rblsmtpd: 192.0.2.1 pid 19597 sbl-xbl.spamhaus.org: 451 ...".

type qmail struct {
	clock *clock
	file  string
	h     header
	ev    Event
	host  interner
	strs  strtab
	// uids are the sender domains seen per uid, to tell qmail-smtpd's
	// (qmaild's) uid from a local user's: see smtpUID.
	uids map[int64]*uidDomains
}

// uidDomains are the first sender domains a uid's messages came with.
type uidDomains struct {
	domains [smtpDomains]string
	n       int
}

// smtpDomains is how many different sender domains make a uid the SMTP
// daemon's: mail that came in by SMTP carries qmaild's uid whoever sent
// it, from every domain on the Internet; a local user's carries the local
// domain. The first messages of that uid, before it is known, still carry
// it: fewer than smtpDomains, far under any uid limit.
const smtpDomains = 3

// maxUIDs bounds the uids remembered.
const maxUIDs = 4096

// smtpUID reports whether uid is the SMTP daemon's, noting the sender
// domain of one more of its messages. Learned from the log alone, it is
// the same in a replay as in the daemon, and needs no uid in the config.
func (q *qmail) smtpUID(uid int64, sender []byte) bool {
	if uid < 0 {
		return false
	}
	if q.uids == nil {
		q.uids = map[int64]*uidDomains{}
	}
	u := q.uids[uid]
	if u == nil {
		if len(q.uids) >= maxUIDs {
			clear(q.uids)
		}
		u = &uidDomains{}
		q.uids[uid] = u
	}
	if u.n >= smtpDomains {
		return true
	}
	domain := sender
	if at := bytes.LastIndexByte(sender, '@'); at >= 0 {
		domain = sender[at+1:]
	}
	for _, d := range u.domains[:u.n] {
		if d == string(domain) {
			return false
		}
	}
	u.domains[u.n] = string(domain)
	u.n++
	return u.n >= smtpDomains
}

func newQmail(o Options) Parser {
	return &qmail{clock: newClock(o), file: o.File}
}

func isQmailProgram(p []byte) bool {
	return hasPrefix(p, "qmail") || string(p) == "splogger" || string(p) == "tcpserver" || string(p) == "rblsmtpd"
}

func sniffQmail(line []byte) int {
	var h header
	if !parseHeader(line, newClock(Options{}), &h) {
		return 0
	}
	if len(h.Program) == 0 || isQmailProgram(h.Program) {
		return 2
	}
	return 0
}

// qmailSendLines are the messages of qmail-send that carry no event but tell
// that the line was understood.
var qmailSendLines = []string{"new msg ", "starting delivery ", "delivery ", "status: ", "end msg ", "bounce msg ",
	"triple bounce: ", "warning: ", "alert: ", "unable to "}

func (q *qmail) Parse(line []byte, lineNo int64, emit func(*Event)) bool {
	if !parseHeader(line, q.clock, &q.h) {
		return false
	}
	return q.parseMessage(&q.h, lineNo, emit)
}

func (q *qmail) parseMessage(h *header, lineNo int64, emit func(*Event)) bool {
	q.h = *h
	msg := h.Message
	program := h.Program
	if len(program) > 0 {
		if !isQmailProgram(program) {
			return false
		}
		if t, n, ok := parseUnixStamp(msg); ok && n < len(msg) && msg[n] == ' ' {
			q.h.Time, msg = t, msg[n+1:]
		}
	}
	// Under multilog, and through splogger, the program names itself.
	for _, p := range []string{"tcpserver", "rblsmtpd", "qmail-smtpd"} {
		if rest, ok := cutPrefix(msg, p+": "); ok {
			program, msg = []byte(p), rest
			break
		}
	}
	switch string(program) {
	case "tcpserver":
		return q.tcpserver(msg, lineNo, emit)
	case "rblsmtpd":
		return q.rblsmtpd(msg, lineNo, emit)
	case "qmail-smtpd":
		// A patched qmail-smtpd's verdicts: "421 badiprbl: ip 192.0.2.1 rbl: x".
		if i := bytes.Index(msg, []byte(" ip ")); i >= 0 && len(msg) > 3 && isDigit(msg[0]) {
			ip := msg[i+len(" ip "):]
			if sp := indexByte(ip, ' '); sp >= 0 {
				ip = ip[:sp]
			}
			return q.reject(parseIP(ip), msg, lineNo, emit)
		}
		return false
	}
	if rest, ok := cutPrefix(msg, "info msg "); ok {
		return q.info(rest, lineNo, emit)
	}
	return hasAnyPrefix(msg, qmailSendLines)
}

func (q *qmail) event(kind Kind, lineNo int64) *Event {
	e := &q.ev
	e.Reset()
	e.Time = q.h.Time
	e.MTA = "qmail"
	e.Kind = kind
	if len(q.h.Host) > 0 {
		e.Host = q.host.get(q.h.Host)
	}
	e.File = q.file
	e.Line = lineNo
	return e
}

func (q *qmail) reject(ip netip.Addr, reason []byte, lineNo int64, emit func(*Event)) bool {
	if !ip.IsValid() {
		return false
	}
	e := q.event(Rejected, lineNo)
	e.ClientIP = ip
	e.Reason = q.strs.reason(reason)
	emit(e)
	return true
}

// tcpserver reads the connection lines; "ok" is the connection accepted
// for qmail-smtpd, "deny" one refused by the rules.
func (q *qmail) tcpserver(msg []byte, lineNo int64, emit func(*Event)) bool {
	kind := Connect
	rest, ok := cutPrefix(msg, "ok ")
	if !ok {
		if rest, ok = cutPrefix(msg, "end "); ok {
			// "end P0 status S": the session is over (see SessionEnd).
			pid, n := leadingInt(rest)
			if n == 0 || pid <= 0 {
				return false
			}
			e := q.event(SessionEnd, lineNo)
			e.PID = pid
			e.Reason = q.strs.reason(bytes.TrimSpace(rest[n:]))
			emit(e)
			return true
		}
		if rest, ok = cutPrefix(msg, "deny "); !ok {
			return hasAnyPrefix(msg, []string{"pid ", "status: ", "warning: "})
		}
		kind = Rejected
	}
	pid, _ := leadingInt(rest)
	// "PID LOCALHOST:LOCALIP:LOCALPORT REMOTEHOST:REMOTEIP:REMOTEINFO:REMOTEPORT";
	// ucspi-tcp6 writes IPv6 addresses with their colons, so the remote
	// part is read from its ends: the host before the first colon, the
	// port after the last, the info before that, the address between.
	remote := rest
	if sp := bytes.LastIndexByte(rest, ' '); sp >= 0 {
		remote = rest[sp+1:]
	}
	hostEnd := indexByte(remote, ':')
	portAt := bytes.LastIndexByte(remote, ':')
	if hostEnd < 0 || portAt <= hostEnd {
		return false
	}
	infoAt := bytes.LastIndexByte(remote[:portAt], ':')
	if infoAt <= hostEnd {
		return false
	}
	ip := parseIP(remote[hostEnd+1 : infoAt])
	if !ip.IsValid() {
		return false
	}
	e := q.event(kind, lineNo)
	e.ClientIP, e.ClientHost = ip, string(remote[:hostEnd])
	if kind == Connect {
		e.PID = pid
	}
	if kind == Rejected {
		e.Reason = "tcpserver deny"
	}
	emit(e)
	return true
}

// rblsmtpd reads "192.0.2.1 pid 19597 sbl-xbl.spamhaus.org: 451 text" and
// the older "relays.ordb.org blocked 192.0.2.1 host -".
func (q *qmail) rblsmtpd(msg []byte, lineNo int64, emit func(*Event)) bool {
	if i := bytes.Index(msg, []byte(" blocked ")); i >= 0 {
		ip := msg[i+len(" blocked "):]
		if sp := indexByte(ip, ' '); sp >= 0 {
			ip = ip[:sp]
		}
		return q.reject(parseIP(ip), append([]byte("rblsmtpd: "), msg[:i+len(" blocked")]...), lineNo, emit)
	}
	sp := indexByte(msg, ' ')
	if sp <= 0 {
		return false
	}
	reason := msg[sp:]
	if i := bytes.Index(reason, []byte(": ")); i >= 0 {
		reason = reason[i+2:]
	}
	return q.reject(parseIP(msg[:sp]), append([]byte("rblsmtpd: "), reason...), lineNo, emit)
}

// info reads "N: bytes B from <s> qp P uid U".
func (q *qmail) info(rest []byte, lineNo int64, emit func(*Event)) bool {
	id, n := leadingInt(rest)
	if n == 0 {
		return false
	}
	rest, ok := cutPrefix(rest[n:], ": bytes ")
	if !ok {
		return false
	}
	size, n := leadingInt(rest)
	if n == 0 {
		return false
	}
	rest, ok = cutPrefix(rest[n:], " from <")
	if !ok {
		return false
	}
	// The sender may contain "> qp ": the real one is the last.
	end := lastIndex(rest, "> qp ")
	if end < 0 {
		return false
	}
	sender := rest[:end]
	tail := rest[end+len("> qp "):]
	qp, _ := leadingInt(tail)
	uid := int64(-1)
	if at := lastIndex(tail, " uid "); at >= 0 {
		if u, n := leadingInt(tail[at+len(" uid "):]); n > 0 {
			uid = u
		}
	}
	e := q.event(Accepted, lineNo)
	var digits [20]byte
	e.QueueID = MakeQID(strconv.AppendInt(digits[:0], id, 10))
	e.Sender = q.strs.sender(sender)
	e.HasSender = true
	e.Size = size
	e.UID = uid
	e.PID = qp
	if q.smtpUID(uid, sender) {
		e.UID = -1 // came in by SMTP: not a local user's
	}
	emit(e)
	return true
}
