package parsers

import (
	"bytes"
	"net/netip"
	"time"
)

func init() {
	Register(Format{Name: "postfix", New: newPostfix, Sniff: sniffPostfix})
}

// Postfix logs one message over several lines of several daemons, tied by
// the queue ID:
//
//	smtpd[..]: 3F1A2B: client=host[192.0.2.1], sasl_method=PLAIN, sasl_username=u
//	pickup[..]: 3F1A2B: uid=1000 from=<user>         (local submission instead)
//	qmgr[..]: 3F1A2B: from=<s@example.org>, size=1234, nrcpt=2 (queue active)
//	qmgr[..]: 3F1A2B: removed
//
// The accepted event is emitted at the qmgr "from=" line, which is when the
// message is in the queue, carrying what smtpd or pickup said earlier. qmgr
// logs "from=" again each time a deferred message is retried: the queue
// table remembers that the event was emitted until "removed".

// postfixQueueMax bounds the queue table: a log cut mid-stream, or lines
// lost by syslog, leave entries that no "removed" line ever clears.
const (
	postfixQueueMax = 1 << 17
	postfixQueueAge = 24 * time.Hour
)

type postfixMessage struct {
	seen       time.Time
	clientIP   netip.Addr
	clientHost string
	saslUser   string
	uid        int64
	emitted    bool
}

type postfix struct {
	clock *clock
	file  string
	h     header
	ev    Event
	host  interner
	queue map[string]*postfixMessage
}

func newPostfix(o Options) Parser {
	return &postfix{clock: newClock(o), file: o.File, queue: make(map[string]*postfixMessage)}
}

// postfixDaemons are the Postfix programs, as the last part of the syslog
// name: "postfix/smtpd", "postfix-out/qmgr", "postfix/submission/smtpd".
var postfixDaemons = []string{
	"smtpd", "qmgr", "pickup", "cleanup", "smtp", "lmtp", "local", "virtual", "pipe",
	"bounce", "postscreen", "dnsblog", "tlsproxy", "anvil", "master", "scache",
	"trivial-rewrite", "error", "discard", "postsuper", "postdrop", "sendmail",
	"verify", "flush", "showq", "proxymap", "tlsmgr", "qmqpd", "oqmgr", "spawn",
	"postfix-script", "postlog", "postmap", "postqueue",
}

// postfixDaemon returns the daemon of a syslog name, and whether it is a
// Postfix one. syslog_name is free, so a name such as "smtp-25/smtpd"
// counts when its last part is a Postfix daemon.
func postfixDaemon(program []byte) ([]byte, bool) {
	slash := bytes.LastIndexByte(program, '/')
	if slash < 0 {
		return nil, false
	}
	d := program[slash+1:]
	for _, name := range postfixDaemons {
		if string(d) == name {
			return d, true
		}
	}
	return nil, false
}

func sniffPostfix(line []byte) int {
	var h header
	if !parseHeader(line, newClock(Options{}), &h) {
		return 0
	}
	if _, ok := postfixDaemon(h.Program); !ok {
		return 0
	}
	if hasPrefix(h.Program, "postfix") {
		return 2
	}
	return 1
}

func (p *postfix) Parse(line []byte, lineNo int64, emit func(*Event)) bool {
	if !parseHeader(line, p.clock, &p.h) {
		return false
	}
	daemon, ok := postfixDaemon(p.h.Program)
	if !ok {
		return false
	}
	qid, rest, ok := queueID(p.h.Message)
	if !ok {
		return false
	}
	switch string(daemon) {
	case "smtpd":
		if v, ok := cutPrefix(rest, "client="); ok {
			p.client(qid, v)
			return true
		}
	case "pickup":
		if hasPrefix(rest, "uid=") {
			m := p.message(qid)
			m.uid = intField(rest, "uid")
			return true
		}
	case "qmgr", "oqmgr":
		if hasPrefix(rest, "from=<") {
			return p.queued(qid, rest, lineNo, emit)
		}
		if string(rest) == "removed" {
			delete(p.queue, string(qid))
			return true
		}
	case "cleanup":
		return hasPrefix(rest, "message-id=")
	default:
		return hasPrefix(rest, "to=<")
	}
	return false
}

// message returns the queue entry of qid, making it when new.
func (p *postfix) message(qid []byte) *postfixMessage {
	if m, ok := p.queue[string(qid)]; ok {
		return m
	}
	if len(p.queue) >= postfixQueueMax {
		p.prune()
	}
	m := &postfixMessage{seen: p.h.Time, uid: -1}
	p.queue[string(qid)] = m
	return m
}

// prune drops entries older than postfixQueueAge; if that is not enough, it
// drops a quarter of the table, whichever entries the map yields first.
func (p *postfix) prune() {
	cutoff := p.h.Time.Add(-postfixQueueAge)
	for k, m := range p.queue {
		if m.seen.Before(cutoff) {
			delete(p.queue, k)
		}
	}
	for k := range p.queue {
		if len(p.queue) < postfixQueueMax*3/4 {
			break
		}
		delete(p.queue, k)
	}
}

// client reads "host[ip]" and the optional SASL fields of smtpd's line.
func (p *postfix) client(qid, v []byte) {
	m := p.message(qid)
	hostIP := v
	if c := indexByte(v, ','); c >= 0 {
		hostIP = v[:c]
	}
	host, ip := hostAndIP(hostIP)
	m.clientIP = ip
	m.clientHost = string(host)
	if u, ok := field(v, "sasl_username"); ok {
		m.saslUser = string(u)
	}
}

// queued reads qmgr's `from=<s>, size=N, nrcpt=N (queue active)` and emits
// the accepted event, once per queue ID.
func (p *postfix) queued(qid, rest []byte, lineNo int64, emit func(*Event)) bool {
	// The sender may hold any byte, even ">, size=": the real field is the
	// last one.
	end := bytes.LastIndex(rest, []byte(">, size="))
	if end < 0 {
		// "from=<s>, status=expired, returned to sender" and the like.
		return true
	}
	m := p.message(qid)
	if m.emitted {
		return true
	}
	m.emitted = true
	tail := rest[end+2:]
	e := &p.ev
	e.Reset()
	e.Time = p.h.Time
	e.MTA = "postfix"
	e.Kind = Accepted
	e.Host = p.host.get(p.h.Host)
	e.QueueID = string(qid)
	e.Sender = normalizeSender(rest[len("from=<"):end])
	e.HasSender = true
	e.Size = intField(tail, "size")
	e.NRcpt = intField(tail, "nrcpt")
	e.ClientIP = m.clientIP
	e.ClientHost = m.clientHost
	e.SASLUser = m.saslUser
	e.UID = m.uid
	e.File = p.file
	e.Line = lineNo
	emit(e)
	return true
}
