// Package loggen writes synthetic mail logs: ordinary traffic with mail
// bombs planted in it, the same log for the same seed. It feeds the
// samples, the tests and the benchmarks, so that all three measure the same
// kind of traffic.
//
// Ordinary senders stay far below the built-in limits (30 messages a
// minute per sender, 60 per client, 200 an hour per account); each bomb
// crosses exactly one kind of limit:
//   - a sender bomb: one sender, 45 messages in 50 seconds, from many clients;
//   - a client bomb: one address, 75 messages in 60 seconds, many senders;
//   - an account bomb: one SASL user, 240 messages in 48 minutes, from a
//     few addresses and senders, none of them fast on its own.
//
// qmail logs carry no client or account, so only the sender bomb is
// planted there.
package loggen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"
)

// Options describe the log to write.
type Options struct {
	Format string // postfix, sendmail or qmail
	Lines  int    // about how many lines
	Seed   uint64
	Start  time.Time
	// BombEvery is how many ordinary messages come between two sets of
	// bombs (default 20000); the first set comes after 50 of them.
	BombEvery int
	// Gap is the mean time between ordinary messages (default 2 s).
	Gap time.Duration
	// Distinct gives every ordinary message a sender of its own, and
	// Terse writes only the line that completes a message's event (qmgr's
	// from=, sendmail's from=, qmail's info msg): what a state of a million
	// keys is measured with. Neither plants bombs.
	Distinct, Terse bool
}

// Formats are the formats Write knows.
var Formats = []string{"postfix", "sendmail", "qmail"}

// message is one message to log.
type message struct {
	t        time.Time
	sender   string
	client   netip.Addr
	host     string
	saslUser string
	size     int
	rcpts    []string
	uid      int
}

type generator struct {
	o       Options
	rng     *rand.Rand
	w       *bufio.Writer
	t       time.Time
	lines   int
	serial  int
	senders []string
	clients []netip.Addr
	planted []Bomb
	write   func(m *message)
	noise   func()
}

// Bomb is one planted bomb: the key that floods.
type Bomb struct {
	KeyType string // sender, client_ip or sasl_user
	Key     string
}

// Write writes a log to w and returns the bombs it planted.
func Write(w io.Writer, o Options) ([]Bomb, error) {
	if !slices.Contains(Formats, o.Format) {
		return nil, fmt.Errorf("unknown format %q (%v)", o.Format, Formats)
	}
	if o.Lines <= 0 {
		return nil, fmt.Errorf("lines must be positive")
	}
	if o.BombEvery <= 0 {
		o.BombEvery = 20000
	}
	if o.Start.IsZero() {
		o.Start = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	}
	g := &generator{o: o, rng: rand.New(rand.NewPCG(o.Seed, 0x626f6d62)), w: bufio.NewWriter(w), t: o.Start.UTC()}
	g.population()
	switch o.Format {
	case "postfix":
		g.write, g.noise = g.postfixMessage, g.postfixNoise
	case "sendmail":
		g.write, g.noise = g.sendmailMessage, g.sendmailNoise
	case "qmail":
		g.write, g.noise = g.qmailMessage, g.qmailNoise
	}
	if o.Gap <= 0 {
		o.Gap = 2 * time.Second
		g.o.Gap = o.Gap
	}
	ordinary, set := 0, 0
	for g.lines < o.Lines {
		if !o.Distinct && !o.Terse && ordinary == 50+set*o.BombEvery {
			g.bombs(set)
			set++
		}
		g.ordinary()
		ordinary++
		if !o.Terse && g.rng.IntN(6) == 0 {
			g.noise()
		}
	}
	return g.planted, g.w.Flush()
}

// population makes the ordinary senders and clients: enough of them that
// none comes near a limit however long the log.
func (g *generator) population() {
	n := max(300, g.o.Lines/40)
	domains := []string{"example.org", "example.com", "example.net", "mail.example", "lists.example.org"}
	for i := range n {
		g.senders = append(g.senders, fmt.Sprintf("user%d@%s", i, domains[i%len(domains)]))
	}
	for i := range n / 3 {
		if i%10 == 9 {
			g.clients = append(g.clients, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, byte(i >> 8), 0, 0, 0, 0, 0, 0, byte(i >> 8), byte(i)}))
			continue
		}
		g.clients = append(g.clients, netip.AddrFrom4([4]byte{198, 51, byte(100 + i/250%20), byte(1 + i%250)}))
	}
}

// advance moves the clock by an exponential gap of the given mean.
func (g *generator) advance(mean time.Duration) time.Time {
	g.t = g.t.Add(time.Duration(g.rng.ExpFloat64() * float64(mean)))
	return g.t
}

func (g *generator) ordinary() {
	i := g.rng.IntN(len(g.senders))
	c := g.clients[i%len(g.clients)]
	sender := g.senders[i]
	if g.o.Distinct {
		sender = fmt.Sprintf("unique%d@%s", g.serial, "many.example")
	}
	m := &message{t: g.advance(g.o.Gap), sender: sender, client: c, host: hostOf(c),
		size: 800 + g.rng.IntN(60000), rcpts: g.recipients(1 + g.rng.IntN(3)), uid: -1}
	if i%17 == 0 {
		m.saslUser = fmt.Sprintf("user%d", i) // submission
	}
	g.write(m)
}

func (g *generator) recipients(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("rcpt%d@mx.example.org", g.rng.IntN(500))
	}
	return out
}

// bombNames keep the bombs of the three formats apart, so that the samples
// replayed together show each one's bombs.
var bombNames = map[string]struct {
	spam, victim string
	client       byte
}{
	"postfix":  {"spam.example", "victim.example", 66},
	"sendmail": {"junk.example", "prey.example", 166},
	"qmail":    {"bulk.example", "", 0},
}

// bombs plants one set of bombs, spread so that they do not overlap.
func (g *generator) bombs(set int) {
	names := bombNames[g.o.Format]
	// Sender bomb: 45 messages in about 50 s from 15 clients.
	sender := fmt.Sprintf("bomber%d@%s", set, names.spam)
	g.planted = append(g.planted, Bomb{"sender", sender})
	for i := range 45 {
		c := netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + i%15)})
		g.write(&message{t: g.advance(time.Second + 100*time.Millisecond), sender: sender, client: c, host: "",
			size: 3000, rcpts: g.recipients(1), uid: -1})
	}
	if g.o.Format == "qmail" {
		return
	}
	g.advance(10 * time.Minute)
	// Client bomb: 75 messages in about 60 s, each from another sender.
	client := netip.AddrFrom4([4]byte{203, 0, 113, names.client + byte(set%30)})
	g.planted = append(g.planted, Bomb{"client_ip", client.String()})
	for i := range 75 {
		g.write(&message{t: g.advance(800 * time.Millisecond), sender: fmt.Sprintf("x%d.%d@random%d.example", set, i, i),
			client: client, host: "", size: 2000, rcpts: g.recipients(1), uid: -1})
	}
	g.advance(10 * time.Minute)
	g.planted = append(g.planted, Bomb{"sasl_user", fmt.Sprintf("stolen%d@%s", set, names.victim)})
	// Account bomb: a stolen login, 240 messages in about 48 minutes, from
	// 4 addresses and 8 senders: each under its own limit, the account not.
	for i := range 240 {
		c := netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i%4)})
		g.write(&message{t: g.advance(12 * time.Second), sender: fmt.Sprintf("sales%d@%s", i%8, names.victim), client: c,
			host: "", saslUser: fmt.Sprintf("stolen%d@%s", set, names.victim), size: 5000, rcpts: g.recipients(5), uid: -1})
		if i%3 == 0 {
			g.ordinary()
		}
	}
}

func hostOf(a netip.Addr) string {
	if a.Is6() {
		return ""
	}
	b := a.As4()
	return fmt.Sprintf("mail%d.example.net", b[3])
}

func (g *generator) printf(format string, args ...any) {
	fmt.Fprintf(g.w, format, args...)
	g.lines++
}

// Postfix, with rsyslog's RFC 3339 stamps.

func pfStamp(t time.Time) string { return t.Format("2006-01-02T15:04:05.000000-07:00") }

func clientName(host string, a netip.Addr) string {
	if host == "" {
		host = "unknown"
	}
	return host + "[" + a.String() + "]"
}

func (g *generator) postfixMessage(m *message) {
	g.serial++
	qid := fmt.Sprintf("%X", 0x4A000000+g.serial*7919%0x0FFFFFFF)
	pid := 10000 + g.serial%5000
	t := m.t
	step := func() string { t = t.Add(time.Duration(5+g.rng.IntN(40)) * time.Millisecond); return pfStamp(t) }
	service := "postfix/smtpd"
	if m.saslUser != "" {
		service = "postfix/submission/smtpd"
	}
	client := clientName(m.host, m.client)
	if g.o.Terse {
		g.printf("%s mx1 postfix/qmgr[900]: %s: from=<%s>, size=%d, nrcpt=%d (queue active)\n", pfStamp(t), qid, m.sender, m.size, len(m.rcpts))
		return
	}
	g.printf("%s mx1 %s[%d]: connect from %s\n", pfStamp(t), service, pid, client)
	if m.saslUser != "" {
		g.printf("%s mx1 %s[%d]: %s: client=%s, sasl_method=PLAIN, sasl_username=%s\n", step(), service, pid, qid, client, m.saslUser)
	} else {
		g.printf("%s mx1 %s[%d]: %s: client=%s\n", step(), service, pid, qid, client)
	}
	g.printf("%s mx1 postfix/cleanup[%d]: %s: message-id=<%d.%s>\n", step(), pid+1, qid, g.serial, m.sender)
	g.printf("%s mx1 postfix/qmgr[900]: %s: from=<%s>, size=%d, nrcpt=%d (queue active)\n", step(), qid, m.sender, m.size, len(m.rcpts))
	for _, r := range m.rcpts {
		g.printf("%s mx1 postfix/smtp[%d]: %s: to=<%s>, relay=mx.example.org[192.0.2.25]:25, delay=0.4, delays=0.1/0/0.1/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok)\n", step(), pid+2, qid, r)
	}
	g.printf("%s mx1 postfix/qmgr[900]: %s: removed\n", step(), qid)
	g.printf("%s mx1 %s[%d]: disconnect from %s ehlo=1 mail=1 rcpt=%d data=1 quit=1 commands=%d\n", step(), service, pid, client, len(m.rcpts), 4+len(m.rcpts))
}

func (g *generator) postfixNoise() {
	t := pfStamp(g.advance(time.Second))
	ip := netip.AddrFrom4([4]byte{198, 18, byte(g.rng.IntN(256)), byte(1 + g.rng.IntN(254))})
	pid := 20000 + g.rng.IntN(5000)
	switch g.rng.IntN(3) {
	case 0:
		g.printf("%s mx1 postfix/smtpd[%d]: NOQUEUE: reject: RCPT from unknown[%s]: 554 5.7.1 <nobody@mx.example.org>: Relay access denied; from=<spam@spam.example> to=<nobody@mx.example.org> proto=ESMTP helo=<x>\n", t, pid, ip)
	case 1:
		g.printf("%s mx1 postfix/smtpd[%d]: warning: unknown[%s]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n", t, pid, ip)
	default:
		g.printf("%s mx1 postfix/smtpd[%d]: lost connection after AUTH from unknown[%s]\n", t, pid, ip)
	}
}

// sendmail, with classic syslog stamps.

func smStamp(t time.Time) string { return t.Format(time.Stamp) }

func (g *generator) sendmailMessage(m *message) {
	g.serial++
	qid := fmt.Sprintf("5AK%c%02X%07d", 'A'+byte(g.serial/100000%26), g.serial%256, g.serial)
	pid := 3000 + g.serial%5000
	t := m.t
	relay := "[" + m.client.String() + "]"
	if m.host != "" {
		relay = m.host + " " + relay
	}
	if m.saslUser != "" && !g.o.Terse {
		g.printf("%s mx1 sm-mta[%d]: %s: AUTH=server, relay=%s, authid=%s, mech=PLAIN, bits=0\n", smStamp(t), pid, qid, relay, m.saslUser)
	}
	t = t.Add(200 * time.Millisecond)
	g.printf("%s mx1 sm-mta[%d]: %s: from=<%s>, size=%d, class=0, nrcpts=%d, msgid=<%d.%s>, proto=ESMTP, daemon=MTA, relay=%s\n",
		smStamp(t), pid, qid, m.sender, m.size, len(m.rcpts), g.serial, m.sender, relay)
	if g.o.Terse {
		return
	}
	for _, r := range m.rcpts {
		g.printf("%s mx1 sm-mta[%d]: %s: to=<%s>, delay=00:00:01, xdelay=00:00:01, mailer=esmtp, pri=120000, relay=mx.example.org. [192.0.2.25], dsn=2.0.0, stat=Sent (Ok)\n", smStamp(t), pid+1, qid, r)
	}
}

func (g *generator) sendmailNoise() {
	t := smStamp(g.advance(time.Second))
	ip := netip.AddrFrom4([4]byte{198, 18, byte(g.rng.IntN(256)), byte(1 + g.rng.IntN(254))})
	pid := 9000 + g.rng.IntN(5000)
	switch g.rng.IntN(2) {
	case 0:
		g.printf("%s mx1 sm-mta[%d]: 5AKZ%010d: ruleset=check_rcpt, arg1=<nobody@mx.example.org>, relay=[%s], reject=550 5.7.1 <nobody@mx.example.org>... Relaying denied\n", t, pid, pid, ip)
	default:
		g.printf("%s mx1 sm-mta[%d]: 5AKZ%010d: [%s] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA\n", t, pid, pid, ip)
	}
}

// qmail-send under multilog, with TAI64N stamps.

func taiStamp(t time.Time) string {
	return fmt.Sprintf("@%016x%08x", uint64(t.Unix())+1<<62+10, t.Nanosecond())
}

func (g *generator) qmailMessage(m *message) {
	g.serial++
	id := 1000000 + g.serial
	t := m.t
	uid := 7791 // qmaild: every message that came by SMTP
	if m.saslUser != "" {
		uid = 1000 + g.serial%50
	}
	if !g.o.Terse {
		g.printf("%s new msg %d\n", taiStamp(t), id)
	}
	g.printf("%s info msg %d: bytes %d from <%s> qp %d uid %d\n", taiStamp(t), id, m.size, m.sender, 20000+g.serial%30000, uid)
	if g.o.Terse {
		return
	}
	for i, r := range m.rcpts {
		t = t.Add(3 * time.Millisecond)
		g.printf("%s starting delivery %d: msg %d to remote %s\n", taiStamp(t), g.serial*4+i, id, r)
		g.printf("%s delivery %d: success: 192.0.2.25_accepted_message./Remote_host_said:_250_ok/\n", taiStamp(t.Add(time.Millisecond)), g.serial*4+i)
	}
	g.printf("%s end msg %d\n", taiStamp(t.Add(2*time.Millisecond)), id)
}

func (g *generator) qmailNoise() {
	g.printf("%s status: local 0/10 remote %d/20\n", taiStamp(g.advance(time.Second)), g.rng.IntN(20))
}
