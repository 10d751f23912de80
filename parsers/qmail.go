package parsers

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

type qmail struct {
	clock *clock
	file  string
	h     header
	ev    Event
	host  interner
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
var qmailSendLines = []string{"new msg ", "starting delivery ", "delivery ", "status: ", "end msg ", "bounce msg ", "triple bounce: "}

func (q *qmail) Parse(line []byte, lineNo int64, emit func(*Event)) bool {
	if !parseHeader(line, q.clock, &q.h) {
		return false
	}
	msg := q.h.Message
	if len(q.h.Program) > 0 {
		if !isQmailProgram(q.h.Program) {
			return false
		}
		if t, n, ok := parseUnixStamp(msg); ok && n < len(msg) && msg[n] == ' ' {
			q.h.Time, msg = t, msg[n+1:]
		}
	}
	if rest, ok := cutPrefix(msg, "info msg "); ok {
		return q.info(rest, lineNo, emit)
	}
	for _, p := range qmailSendLines {
		if hasPrefix(msg, p) {
			return true
		}
	}
	return false
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
	uid := int64(-1)
	if at := lastIndex(tail, " uid "); at >= 0 {
		if u, n := leadingInt(tail[at+len(" uid "):]); n > 0 {
			uid = u
		}
	}
	e := &q.ev
	e.Reset()
	e.Time = q.h.Time
	e.MTA = "qmail"
	e.Kind = Accepted
	if len(q.h.Host) > 0 {
		e.Host = q.host.get(q.h.Host)
	}
	e.QueueID = itoa(id)
	e.Sender = normalizeSender(sender)
	e.HasSender = true
	e.Size = size
	e.UID = uid
	e.File = q.file
	e.Line = lineNo
	emit(e)
	return true
}
