package parsers

import (
	"bytes"
	"net/netip"
	"slices"
	"time"

	"github.com/bombwatch/bombwatch/internal/paged"
)

func init() {
	Register(Format{Name: "postfix", New: newPostfix, Sniff: sniffPostfix})
}

// Postfix logs one message over several lines of several daemons, tied by
// the queue ID:
//
//	smtpd[..]: 3F1A2B: client=host[192.0.2.1], sasl_method=PLAIN, sasl_username=u
//	pickup[..]: 3F1A2B: uid=1000 from=<user>         (local submission instead)
//	cleanup[..]: 3F1A2B: info: header Date: ...      (when header_checks log it)
//	qmgr[..]: 3F1A2B: from=<s@example.org>, size=1234, nrcpt=2 (queue active)
//	qmgr[..]: 3F1A2B: removed
//
// The accepted event is emitted at the qmgr "from=" line, which is when the
// message is in the queue, carrying what smtpd, pickup and cleanup said
// earlier. qmgr logs "from=" again each time a deferred message is retried:
// the queue table remembers that the event was emitted until "removed".
//
// smtpd sessions are tied by the process ID: "connect from" starts one, so
// that a "lost connection" can say how long the client stayed, and a
// "disconnect" whose "auth=0/1" counts failures that no SASL warning line
// reported gives them as an auth_failed event.
//
// postscreen's CONNECT gives no event: a client that passes it connects to
// smtpd next, and counting both would count one connection twice.

// The tables are bounded: a log cut mid-stream, or lines lost by syslog,
// leave entries that no closing line ever clears.
const (
	postfixQueueMax    = 1 << 17
	postfixQueueAge    = 24 * time.Hour
	postfixSessionMax  = 1 << 14
	postfixSessionAge  = time.Hour
	maxReason          = 200
	postfixTableTrimTo = 3 // of 4: what a full table is cut down to
)

type postfixMessage struct {
	qid        QID
	seen       int64 // Unix ns: a message made again has another
	clientIP   netip.Addr
	clientHost string
	saslUser   string
	uid        int64
	date       time.Time
	emitted    bool
	id         string // qid as a string, once Counted needs it
}

type postfixSession struct {
	start        time.Time
	authFailures int // reported by SASL warning lines
}

type sessionKey struct {
	host string // interned
	pid  int64
}

type postfix struct {
	clock *clock
	file  string
	h     header
	ev    Event
	host  interner
	strs  strtab
	// The queue table: IDs to places in msgs, whose free places are
	// reused, so that a message in steady state costs no allocation.
	queue    queueIndex
	msgs     paged.Slice[postfixMessage]
	free     []int32
	sessions map[sessionKey]postfixSession
	// order is the queue's IDs as they came, oldest first from head: a
	// full table drops its oldest. An entry whose message was removed
	// since (or made again: seen differs) is skipped.
	order []queued
	head  int
}

// queued is an entry of the queue's order: its message is at idx in msgs
// while that holds the same qid and seen — read there, not looked up in
// the queue index (Counted reads thousands with every batch of lines).
//
// It holds no pointer (seen is Unix ns): the order, some 200,000 entries
// under a flood, is neither scanned by the collector nor written under
// its write barriers.
type queued struct {
	qid  QID
	seen int64
	idx  int32
}

// live returns o's message, or nil when it was removed since.
func (p *postfix) live(o queued) *postfixMessage {
	m := p.msgs.At(o.idx)
	if m.qid != o.qid || m.seen != o.seen {
		return nil
	}
	return m
}

func newPostfix(o Options) Parser {
	return &postfix{clock: newClock(o), file: o.File, queue: newQueueIndex(),
		sessions: make(map[sessionKey]postfixSession)}
}

// postfixDaemon returns the daemon of a syslog name — "postfix/smtpd",
// "postfix-out/qmgr", "postfix/submission/smtpd" — and whether it is a
// Postfix one. syslog_name is free, so a name such as "smtp-25/smtpd"
// counts when its last part is a Postfix daemon.
func postfixDaemon(program []byte) ([]byte, bool) {
	slash := bytes.LastIndexByte(program, '/')
	if slash < 0 {
		return nil, false
	}
	d := program[slash+1:]
	// A switch on the string compiles to a search, not 34 comparisons: it
	// runs on every line.
	switch string(d) {
	case "smtpd", "qmgr", "pickup", "cleanup", "smtp", "lmtp", "local", "virtual", "pipe",
		"bounce", "postscreen", "dnsblog", "tlsproxy", "anvil", "master", "scache",
		"trivial-rewrite", "error", "discard", "postsuper", "postdrop", "sendmail",
		"verify", "flush", "showq", "proxymap", "tlsmgr", "qmqpd", "oqmgr", "spawn",
		"postfix-script", "postlog", "postmap", "postqueue":
		return d, true
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
	return p.parseMessage(&p.h, lineNo, emit)
}

// parseMessage reads the message of a framed line (syslog or journald).
func (p *postfix) parseMessage(h *header, lineNo int64, emit func(*Event)) bool {
	p.h = *h
	daemon, ok := postfixDaemon(h.Program)
	if !ok {
		return false
	}
	msg := h.Message
	if qid, rest, ok := queueID(msg); ok {
		return p.queueLine(string(daemon), qid, rest, lineNo, emit)
	}
	switch string(daemon) {
	case "smtpd":
		return p.smtpd(msg, lineNo, emit)
	case "postscreen":
		return p.postscreen(msg, lineNo, emit)
	}
	return hasAnyPrefix(msg, postfixQuiet[string(daemon)])
}

// postfixQuiet are the messages, by daemon, that are understood and carry
// no event.
var postfixQuiet = map[string][]string{
	"smtpd": {"Anonymous TLS connection established", "Trusted TLS connection established",
		"Verified TLS connection established", "Untrusted TLS connection established",
		"SSL_accept error from", "setting up TLS connection from", "discarding EHLO keywords",
		"warning: hostname ", "warning: TLS library problem", "NOQUEUE: reject_warning: ", "NOQUEUE: filter: "},
	"postscreen": {"CONNECT from ", "PASS OLD ", "PASS NEW ", "WHITELISTED ", "ALLOWLISTED ",
		"DISCONNECT ", "DNSBL rank ", "WHITELIST VETO ", "ALLOWLIST VETO ", "cache "},
	"dnsblog":  {"addr "},
	"tlsproxy": {"CONNECT from ", "DISCONNECT ", "TLS handshake failed for ", "warning: ", "Anonymous TLS connection established", "Trusted TLS connection established", "Verified TLS connection established", "Untrusted TLS connection established"},
	"anvil":    {"statistics: "},
	"master":   {"daemon started", "reload ", "terminating on signal", "daemon started -- version"},
	"scache":   {"statistics: "},
	"smtp":     {"Trusted TLS connection established", "Verified TLS connection established", "Untrusted TLS connection established", "Anonymous TLS connection established"},
}

func hasAnyPrefix(msg []byte, prefixes []string) bool {
	for _, p := range prefixes {
		if hasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// queueLine reads "QID: ..." lines.
func (p *postfix) queueLine(daemon string, qid, rest []byte, lineNo int64, emit func(*Event)) bool {
	switch daemon {
	case "smtpd":
		if v, ok := cutPrefix(rest, "client="); ok {
			p.client(qid, v)
			return true
		}
		if hasPrefix(rest, "reject: ") || hasPrefix(rest, "milter-reject: ") {
			return p.reject(qid, rest, lineNo, emit)
		}
		return hasAnyPrefix(rest, []string{"filter: ", "hold: ", "discard: ", "redirect: ", "reject_warning: ", "warning: "})
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
			p.remove(MakeQID(qid))
			return true
		}
		return hasPrefix(rest, "skipped, still being delivered")
	case "cleanup":
		if hasPrefix(rest, "reject: ") || hasPrefix(rest, "milter-reject: ") {
			return p.reject(qid, rest, lineNo, emit)
		}
		if d, ok := cutAnyPrefix(rest, "info: header Date: ", "warning: header Date: "); ok {
			p.dateHeader(qid, d)
			return true
		}
		return hasAnyPrefix(rest, []string{"message-id=", "resent-message-id=", "info: ", "warning: ", "milter-", "hold: ", "discard: ", "redirect: ", "replace: ", "filter: "})
	case "bounce":
		return hasAnyPrefix(rest, []string{"sender non-delivery notification: ", "sender delivery status notification: ", "sender delay notification: ", "postmaster non-delivery notification: "})
	}
	// smtp, local, virtual, pipe, lmtp, error, discard: delivery results.
	return hasAnyPrefix(rest, []string{"to=<", "host ", "lost connection with ", "conversation with ", "enabling PIX workarounds", "Cannot start TLS"})
}

func cutAnyPrefix(b []byte, prefixes ...string) ([]byte, bool) {
	for _, p := range prefixes {
		if rest, ok := cutPrefix(b, p); ok {
			return rest, true
		}
	}
	return b, false
}

// Counted returns the queue IDs of the messages whose accepted event was
// emitted and that are not removed yet — a deferred message's next
// "from=" line must not count again — newest first, at most MaxCounted.
//
// It is asked for with every batch of lines a source hands on: it walks
// the queue's order from the newest, not the whole table (131,072
// messages sorted each time were most of a replay's time), and a
// message's ID is made a string once.
func (p *postfix) Counted() []string {
	var ids []string
	for j := len(p.order) - 1; j >= p.head && len(ids) < MaxCounted; j-- {
		m := p.live(p.order[j])
		if m == nil || !m.emitted {
			continue
		}
		if m.id == "" {
			m.id = m.qid.String()
		}
		if ids == nil {
			ids = make([]string, 0, min(p.queue.len(), MaxCounted))
		}
		ids = append(ids, m.id)
	}
	return ids
}

// SetCounted marks queue IDs as counted, after a restart.
func (p *postfix) SetCounted(ids []string) {
	for _, id := range slices.Backward(ids) { // oldest first, as they came
		if id != "" {
			p.message([]byte(id)).emitted = true
		}
	}
}

// message returns the queue entry of qid, making it when new. The pointer
// is valid until the next call.
func (p *postfix) message(qid []byte) *postfixMessage {
	key := MakeQID(qid)
	if i, ok := p.queue.find(key, p.qidAt); ok {
		return p.msgs.At(i)
	}
	if p.queue.len() >= postfixQueueMax {
		p.pruneQueue()
	}
	var i int32
	if n := len(p.free); n > 0 {
		i, p.free = p.free[n-1], p.free[:n-1]
	} else {
		i = p.msgs.Add()
	}
	seen := p.h.Time.UnixNano()
	*p.msgs.At(i) = postfixMessage{qid: key, seen: seen, uid: -1}
	p.queue.add(key, i)
	if len(p.order)-p.head > 2*p.queue.len()+4096 {
		p.compactOrder() // most were removed by their "removed" lines
	}
	p.order = append(p.order, queued{key, seen, i})
	return p.msgs.At(i)
}

func (p *postfix) remove(key QID) {
	if i, ok := p.queue.find(key, p.qidAt); ok {
		p.removeAt(key, i)
	}
}

// qidAt is the queue ID of the message at i.
func (p *postfix) qidAt(i int32) *QID { return &p.msgs.At(i).qid }

// removeAt removes the message of key, at i in msgs.
func (p *postfix) removeAt(key QID, i int32) {
	p.queue.remove(key, i)
	*p.msgs.At(i) = postfixMessage{}
	p.free = append(p.free, i)
}

// pruneQueue drops the oldest entries: those older than postfixQueueAge,
// and more down to three quarters of the table.
func (p *postfix) pruneQueue() {
	cutoff := p.h.Time.Add(-postfixQueueAge).UnixNano()
	keep := p.queue.len() * postfixTableTrimTo / 4
	for p.head < len(p.order) {
		o := p.order[p.head]
		if p.live(o) != nil {
			if p.queue.len() < keep && o.seen >= cutoff {
				break
			}
			p.removeAt(o.qid, o.idx)
		}
		p.head++
	}
	// What is left of the order from head is mostly live (message
	// compacts it when it is not): moved down, not looked up again — a
	// table kept full by an attacker's one-line messages is pruned every
	// 32,768 of them, and compacting looked up the 98,304 left each time.
	n := copy(p.order, p.order[p.head:])
	p.order, p.head = p.order[:n], 0
}

// compactOrder keeps the order's entries of messages still in the table.
func (p *postfix) compactOrder() {
	live := p.order[:0]
	for _, o := range p.order[p.head:] {
		if p.live(o) != nil {
			live = append(live, o)
		}
	}
	p.order, p.head = live, 0
}

// pruneTable drops entries older than cutoff; if that is not enough, it
// drops entries — whichever the map yields first — down to three quarters
// of what it held.
func pruneTable[K comparable, V any](t map[K]V, cutoff time.Time, seen func(V) time.Time) map[K]V {
	n := len(t)
	for k, v := range t {
		if seen(v).Before(cutoff) {
			delete(t, k)
		}
	}
	for k := range t {
		if len(t) < n*postfixTableTrimTo/4 {
			break
		}
		delete(t, k)
	}
	return t
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
	m.clientHost = p.strs.get(host)
	m.saslUser = ""
	if i := bytes.Index(v, []byte(", sasl_username=")); i >= 0 {
		m.saslUser = p.strs.get(saslUsername(v[i+len(", sasl_username="):]))
	}
}

// saslUsername reads the user name at the start of v, which runs to the
// end of smtpd's line or to the fields Postfix writes after it: a name
// with a comma or a space is still one name, not a shorter one.
func saslUsername(v []byte) []byte {
	for _, f := range []string{", sasl_sender=", ", orig_queue_id=", ", orig_client="} {
		if i := bytes.Index(v, []byte(f)); i >= 0 {
			v = v[:i]
		}
	}
	return v
}

// dateHeader keeps the Date: header that header_checks logged, for the
// burst score: "Tue, 1 Mar 2022 10:00:00 +0100 from host[ip]; from=<s> ...".
func (p *postfix) dateHeader(qid, d []byte) {
	if i := bytes.Index(d, []byte(" from ")); i >= 0 {
		d = d[:i]
	}
	if t, ok := parseDateHeader(d); ok {
		p.message(qid).date = t
	}
}

// event starts an event of the current line.
func (p *postfix) event(kind Kind, lineNo int64) *Event {
	e := &p.ev
	e.Reset()
	e.Time = p.h.Time
	e.MTA = "postfix"
	e.Kind = kind
	e.Host = p.host.get(p.h.Host)
	e.File = p.file
	e.Line = lineNo
	return e
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
	e := p.event(Accepted, lineNo)
	e.QueueID = m.qid
	e.Sender = p.strs.sender(rest[len("from=<"):end])
	e.HasSender = true
	e.Size = intField(tail, "size")
	e.NRcpt = intField(tail, "nrcpt")
	e.ClientIP = m.clientIP
	e.ClientHost = m.clientHost
	e.SASLUser = m.saslUser
	e.UID = m.uid
	e.Date = m.date
	emit(e)
	return true
}

// reject reads smtpd's and cleanup's rejections, with or without a queue
// ID:
//
//	reject: RCPT from host[ip]: 554 5.7.1 <a@b>: Relay access denied; from=<s> to=<r> proto=ESMTP helo=<h>
//	milter-reject: END-OF-MESSAGE from host[ip]: 5.7.1 Spam; from=<s> to=<r> proto=ESMTP helo=<h>
//	reject: header Subject: x from host[ip]; from=<s> to=<r> proto=ESMTP helo=<h>: 5.7.1 content rejected
//
// Most of such a line is the client's to write: the reply quotes its HELO
// name and addresses, a header or body line is quoted whole, and the
// envelope's sender, recipient and HELO name are its own. An event takes
// its client and sender only from what Postfix writes itself, so that no
// client can make an event about another (see rejectClient and
// rejectSender).
func (p *postfix) reject(qid, rest []byte, lineNo int64, emit func(*Event)) bool {
	prefix := "reject"
	if r, ok := cutPrefix(rest, "milter-reject: "); ok {
		prefix, rest = "milter-reject", r
	} else {
		rest = rest[len("reject: "):]
	}
	sp := indexByte(rest, ' ')
	if sp <= 0 {
		return false
	}
	stage := rest[:sp]
	if string(stage) == "header" || string(stage) == "body" {
		return p.contentReject(qid, prefix, stage, rest[sp+1:], lineNo, emit)
	}
	// smtpd: "STAGE from host[ip]: reply; envelope". The stage is one
	// command word and the client's name is one Postfix verified (or
	// "unknown"): the first " from " is Postfix's.
	if !isStageWord(stage) {
		return false
	}
	client, ok := cutPrefix(rest[sp:], " from ")
	if !ok {
		return false
	}
	end := indexByte(client, ' ')
	if end < 0 {
		return false
	}
	host, ip := hostAndIP(bytes.TrimRight(client[:end], ":"))
	if !ip.IsValid() {
		return false
	}
	e := p.event(Rejected, lineNo)
	e.QueueID = MakeQID(qid)
	e.ClientIP, e.ClientHost = ip, p.strs.get(host)
	text := client[end+1:]
	env := envelopeStart(text)
	if stageHasSender(stage) {
		e.Sender, e.HasSender = rejectSender(text)
	}
	e.Reason = p.strs.reason([]byte(prefix), stage, text[:env])
	emit(e)
	return true
}

// contentReject reads cleanup's header_checks and body_checks rejections:
// "header NAME: VALUE from host[ip]; from=<s> to=<r> proto=P helo=<h>:
// reply". The header or body line comes first and is the sender's to
// write, so the client is the one smtpd's "client=" line gave the queue ID;
// only when that line was not seen is it read from the line, and then only
// when the line's envelope is beyond doubt.
func (p *postfix) contentReject(qid []byte, prefix string, stage, rest []byte, lineNo int64, emit func(*Event)) bool {
	sender, hasSender := rejectSender(rest)
	var ip netip.Addr
	var host, saslUser string
	if i, ok := p.queue.find(MakeQID(qid), p.qidAt); ok && qid != nil && p.msgs.At(i).clientIP.IsValid() {
		m := p.msgs.At(i)
		ip, host, saslUser = m.clientIP, m.clientHost, m.saslUser
	} else if hasSender {
		// rejectSender found exactly one envelope: the client is the
		// " from host[ip]" that Postfix wrote just before it.
		before := rest[:bytes.Index(rest, []byte("; from=<"))]
		if sp := bytes.LastIndexByte(before, ' '); sp >= 0 && hasPrefix(before[max(sp-5, 0):], " from ") {
			var h []byte
			h, ip = hostAndIP(before[sp+1:])
			host = p.strs.get(h)
		}
	}
	e := p.event(Rejected, lineNo)
	e.QueueID = MakeQID(qid)
	e.ClientIP, e.ClientHost, e.SASLUser = ip, host, saslUser
	e.Sender, e.HasSender = sender, hasSender
	// The reply comes after the envelope: ">: 5.7.1 text".
	var text []byte
	if i := bytes.LastIndex(rest, []byte(">: ")); i >= 0 {
		text = rest[i+3:]
	}
	e.Reason = p.strs.reason([]byte(prefix), stage, text)
	emit(e)
	return true
}

// isStageWord reports whether b is an SMTP stage as smtpd names it:
// "RCPT", "END-OF-MESSAGE", "CONNECT".
func isStageWord(b []byte) bool {
	if len(b) == 0 || len(b) > 20 {
		return false
	}
	for _, c := range b {
		if !('A' <= c && c <= 'Z') && c != '-' {
			return false
		}
	}
	return true
}

// stageHasSender reports whether a reject at this stage always carries the
// envelope sender: from MAIL FROM on, smtpd writes it into the reject
// (a MAIL reject before the sender is taken, such as the size limit, has
// none; rejectSender then finds the client's HELO first and gives up).
// Before MAIL (CONNECT, HELO, AUTH...) there is no sender, and a "from=<"
// in the line can only be the client's text.
func stageHasSender(stage []byte) bool {
	switch string(stage) {
	case "MAIL", "RCPT", "DATA", "BDAT", "END-OF-MESSAGE":
		return true
	}
	return false
}

// envelopeStart is where the reply of a reject line ends and the envelope
// begins, for the reason; len(text) when there is no envelope.
func envelopeStart(text []byte) int {
	for _, sep := range []string{"; from=<", "; proto=", "; helo=<"} {
		if i := bytes.Index(text, []byte(sep)); i >= 0 {
			return i
		}
	}
	return len(text)
}

// rejectSender reads the sender of the envelope Postfix appends to a
// reject line — "; from=<s> to=<r> proto=P helo=<h>" (smtpd, cleanup) or
// "; from=<s>, to=<r>, proto=P, helo=<h>" (postscreen) — and reports
// whether it is beyond doubt. The reply before it quotes the client's
// addresses and HELO name, and the envelope's recipient and HELO name
// after it are the client's too: any of them may hold a "; from=<" of its
// own. So the sender is taken only when the line holds exactly one, with
// no other envelope field before it. A client that writes "; from=<" into
// its HELO name or addresses makes its own rejects sender-less: it can hide
// its sender from a count, never put another sender in it.
func rejectSender(text []byte) (string, bool) {
	const sep = "; from=<"
	i := bytes.Index(text, []byte(sep))
	if i < 0 || bytes.Contains(text[i+len(sep):], []byte(sep)) {
		return "", false
	}
	before := text[:i]
	for _, f := range []string{" to=<", " proto=", " helo=<"} {
		if bytes.Contains(before, []byte(f)) {
			return "", false
		}
	}
	v := text[i+len(sep):]
	end := addressEnd(v)
	if end < 0 {
		return "", false
	}
	after := v[end+1:]
	if len(after) > 0 && !hasAnyPrefix(after, []string{" to=<", ", to=<", " proto=", ", proto=", " helo=<", ", helo=<", ":"}) {
		return "", false
	}
	return normalizeSender(v[:end]), true
}

// addressEnd returns the index of the '>' that closes an address as Postfix
// logs it (a quoted local part may hold '>'), or -1.
func addressEnd(v []byte) int {
	quoted := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '>':
			return i
		}
	}
	return -1
}

// afterFrom reads "... from host[ip]" at the end of a message or before
// ": ..." or " ...", and returns the client and what follows it.
func afterFrom(msg []byte) (host []byte, ip netip.Addr, tail []byte) {
	i := bytes.Index(msg, []byte(" from "))
	if i < 0 {
		return nil, netip.Addr{}, nil
	}
	client := msg[i+len(" from "):]
	tail = nil
	if sp := indexByte(client, ' '); sp >= 0 {
		client, tail = client[:sp], client[sp+1:]
	}
	host, ip = hostAndIP(client)
	return host, ip, tail
}

// smtpd reads the session lines of smtpd.
func (p *postfix) smtpd(msg []byte, lineNo int64, emit func(*Event)) bool {
	if r, ok := cutPrefix(msg, "NOQUEUE: "); ok {
		if hasPrefix(r, "reject: ") || hasPrefix(r, "milter-reject: ") {
			return p.reject(nil, r, lineNo, emit)
		}
		if hasPrefix(r, "lost connection after ") {
			msg = r
		}
	}
	switch {
	case hasPrefix(msg, "connect from "):
		host, ip, _ := afterFrom(msg[len("connect"):])
		if !ip.IsValid() {
			return false
		}
		p.startSession()
		e := p.event(Connect, lineNo)
		e.ClientIP, e.ClientHost = ip, p.strs.get(host)
		emit(e)
		return true
	case hasPrefix(msg, "disconnect from "):
		return p.disconnect(msg, lineNo, emit)
	case hasPrefix(msg, "lost connection after ") || hasPrefix(msg, "timeout after "):
		return p.lost(msg, lineNo, emit)
	case hasPrefix(msg, "improper command pipelining after ") || hasPrefix(msg, "too many errors after "):
		host, ip, _ := afterFrom(msg)
		if !ip.IsValid() {
			return false
		}
		e := p.event(Rejected, lineNo)
		e.ClientIP, e.ClientHost = ip, string(host)
		e.Reason = p.strs.reason(msg[:bytes.Index(msg, []byte(" from "))])
		emit(e)
		return true
	case hasPrefix(msg, "warning: "):
		return p.warning(msg[len("warning: "):], lineNo, emit)
	}
	return hasAnyPrefix(msg, postfixQuiet["smtpd"])
}

func (p *postfix) sessionKey() sessionKey {
	pid, _ := leadingInt(p.h.PID)
	return sessionKey{host: p.host.get(p.h.Host), pid: pid}
}

func (p *postfix) startSession() {
	if len(p.sessions) >= postfixSessionMax {
		p.sessions = pruneTable(p.sessions, p.h.Time.Add(-postfixSessionAge), func(s postfixSession) time.Time { return s.start })
	}
	p.sessions[p.sessionKey()] = postfixSession{start: p.h.Time}
}

// lost reads "lost connection after CMD from host[ip]" and "timeout after
// CMD from host[ip]", timed from the session's connect when it was seen.
func (p *postfix) lost(msg []byte, lineNo int64, emit func(*Event)) bool {
	host, ip, _ := afterFrom(msg)
	if !ip.IsValid() {
		return false
	}
	e := p.event(LostConnection, lineNo)
	e.ClientIP, e.ClientHost = ip, string(host)
	reason := msg[:bytes.Index(msg, []byte(" from "))]
	if r, ok := cutPrefix(reason, "lost connection after "); ok {
		reason = r // the stage alone: "AUTH", "DATA"
	}
	e.Reason = p.strs.reason(reason)
	if s, ok := p.sessions[p.sessionKey()]; ok && !p.h.Time.Before(s.start) {
		e.Duration = p.h.Time.Sub(s.start)
	}
	emit(e)
	return true
}

// disconnect ends a session. "auth=0/1" says one AUTH was tried and none
// succeeded: failures that no SASL warning of the session reported are
// emitted as one auth_failed event.
func (p *postfix) disconnect(msg []byte, lineNo int64, emit func(*Event)) bool {
	host, ip, tail := afterFrom(msg[len("dis"):])
	if !ip.IsValid() {
		return false
	}
	key := p.sessionKey()
	s, seen := p.sessions[key]
	delete(p.sessions, key)
	a, ok := field(tail, "auth")
	if !ok {
		return true
	}
	ok1, n1 := leadingInt(a)
	if n1 == 0 || n1 >= len(a) || a[n1] != '/' {
		return true
	}
	tried, n2 := leadingInt(a[n1+1:])
	if n2 == 0 {
		return true
	}
	failed := int(tried - ok1)
	if seen {
		failed -= s.authFailures
	}
	if failed <= 0 {
		return true
	}
	e := p.event(AuthFailed, lineNo)
	e.ClientIP, e.ClientHost = ip, string(host)
	e.Reason = "auth=" + string(a)
	emit(e)
	return true
}

// warning reads smtpd's warnings that are about a client.
func (p *postfix) warning(msg []byte, lineNo int64, emit func(*Event)) bool {
	// "host[ip]: SASL LOGIN authentication failed: reason, sasl_username=u"
	if sp := indexByte(msg, ' '); sp > 0 && msg[sp-1] == ':' && hasPrefix(msg[sp+1:], "SASL ") {
		host, ip := hostAndIP(msg[:sp-1])
		text := msg[sp+1:]
		if !ip.IsValid() || !bytes.Contains(text, []byte(" authentication failed")) {
			return false
		}
		if bytes.Contains(text, []byte("Connection lost to authentication server")) {
			return true // the server's trouble, not the client's attempt
		}
		e := p.event(AuthFailed, lineNo)
		e.ClientIP, e.ClientHost = ip, string(host)
		// The reason is SASL's; the user name after it is the client's and
		// may hold ", sasl_username=" of its own: the first is Postfix's.
		if i := bytes.Index(text, []byte(", sasl_username=")); i >= 0 {
			e.SASLUser = string(text[i+len(", sasl_username="):])
			text = text[:i]
		}
		e.Reason = p.strs.reason(bytes.TrimRight(text, ": "))
		{
			key := p.sessionKey()
			if s, ok := p.sessions[key]; ok {
				s.authFailures++
				p.sessions[key] = s
			}
		}
		emit(e)
		return true
	}
	// anvil's limits, enforced by smtpd: "Connection rate limit exceeded:
	// 31 from host[ip] for service smtpd".
	if i := bytes.Index(msg, []byte(" limit exceeded: ")); i > 0 {
		host, ip, _ := afterFrom(msg[i:])
		if !ip.IsValid() {
			return false
		}
		e := p.event(Rejected, lineNo)
		e.ClientIP, e.ClientHost = ip, string(host)
		e.Reason = p.strs.reason(msg[:i+len(" limit exceeded")])
		emit(e)
		return true
	}
	if hasPrefix(msg, "non-SMTP command from ") {
		host, ip, _ := afterFrom(msg)
		if !ip.IsValid() {
			return false
		}
		e := p.event(Rejected, lineNo)
		e.ClientIP, e.ClientHost = ip, string(host)
		e.Reason = "non-SMTP command"
		emit(e)
		return true
	}
	// SASL's own complaints, without the client (smtpd's line with the
	// client follows), and others about the server.
	return hasAnyPrefix(msg, []string{"hostname ", "TLS library problem", "dnsblog reply timeout", "Illegal address syntax from ",
		"SASL authentication failure: ", "SASL authentication problem: ", "database ", "connect to "})
}

// postscreenRejects are postscreen's verdicts on a client: each is a
// rejected event whose reason is the verdict.
var postscreenRejects = []string{"PREGREET ", "COMMAND TIME LIMIT ", "COMMAND COUNT LIMIT ", "COMMAND LENGTH LIMIT ",
	"COMMAND PIPELINING ", "NON-SMTP COMMAND ", "BARE NEWLINE ", "DENYLISTED ", "BLACKLISTED "}

func (p *postfix) postscreen(msg []byte, lineNo int64, emit func(*Event)) bool {
	if r, ok := cutPrefix(msg, "NOQUEUE: "); ok && (hasPrefix(r, "reject: ") || hasPrefix(r, "milter-reject: ")) {
		return p.reject(nil, r, lineNo, emit)
	}
	kind := Rejected
	verdict := ""
	for _, v := range postscreenRejects {
		if hasPrefix(msg, v) {
			verdict = v[:len(v)-1]
		}
	}
	if hasPrefix(msg, "HANGUP after ") {
		kind, verdict = LostConnection, "HANGUP"
	}
	if verdict == "" {
		return hasAnyPrefix(msg, postfixQuiet["postscreen"])
	}
	// "PREGREET 14 after 0.08 from [ip]:port: ...", "DENYLISTED [ip]:port"
	open := indexByte(msg, '[')
	if open < 0 {
		return false
	}
	end := indexByte(msg[open:], ']')
	if end < 0 {
		return false
	}
	ip := parseIP(msg[open+1 : open+end])
	if !ip.IsValid() {
		return false
	}
	e := p.event(kind, lineNo)
	e.ClientIP = ip
	e.Reason = verdict
	emit(e)
	return true
}
