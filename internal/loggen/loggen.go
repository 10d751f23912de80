// Package loggen writes synthetic mail logs: ordinary traffic of a small
// or a large site (see Sites) with mail bombs of every kind planted in it
// (see Kinds), the same log for the same seed. It feeds the samples, the
// tests and the benchmarks, so that all three measure the same kind of
// traffic.
//
// Ordinary keys stay under the built-in config's limits — on a large site
// once the big ones' history is learned, which the log starts with — and
// each bomb crosses the limits of its kind only, on keys and networks of
// its own.
package loggen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Options describe the log to write.
type Options struct {
	Format string // postfix, sendmail or qmail
	Lines  int    // about how many lines
	Seed   uint64
	Start  time.Time
	// Site is the ordinary traffic the bombs hide in: "small" (the
	// default) or "large"; see Sites.
	Site string
	// BombEvery is how many ordinary messages come between two sets of
	// bombs (default 20000); the first set comes after 50 of them. Every
	// bomb of a set is written to its end, past Lines if need be.
	BombEvery int
	// Gap is the mean time between ordinary messages (default 2 s on a
	// small site, 10 ms on a large one).
	Gap time.Duration
	// Distinct gives every ordinary message a sender of its own, and
	// Terse writes only the line that completes a message's event (qmgr's
	// from=, sendmail's from=, qmail's info msg): what a state of a million
	// keys is measured with. Neither plants bombs.
	Distinct, Terse bool
}

// Formats are the formats Write knows.
var Formats = []string{"postfix", "sendmail", "qmail"}

// Sites are the kinds of ordinary traffic Write knows:
//   - small: a message every 2 s from a few hundred senders, each client
//     a few addresses of its network;
//   - large: a relay taking 100 messages a second from thousands of
//     senders and clients, with big senders (18 a minute each, a peak
//     of 30), providers' address pools (120 messages a minute from 60
//     addresses of one /24 each) and submission from hundreds of
//     accounts. The log starts with three days of history before Start
//     (see history): what `adapt` learns the big keys' normal from, as a
//     site that ran bombwatch before has.
var Sites = []string{"small", "large"}

// message is one message to log.
type message struct {
	t        time.Time
	sender   string
	client   netip.Addr
	host     string
	saslUser string
	size     int
	rcpts    []string
	uid      int // a local user's, submitted on the machine; -1 when none
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
	pending []pending // bomb events not written yet, by time
	write   func(m *message)
	noise   func()
	// authFailed and unknownRcpt write a SASL failure and a refused
	// recipient; nil where the format logs none (qmail-send).
	authFailed  func(t time.Time, client netip.Addr, user string)
	unknownRcpt func(t time.Time, client netip.Addr, rcpt string)
}

// pending is a bomb's event, written when the log's clock reaches it.
type pending struct {
	t     time.Time
	write func()
}

// Bomb is one planted bomb.
type Bomb struct {
	Kind    string // see Kinds
	KeyType string // sender, client_ip, client_net, sasl_user or uid
	Key     string
	// Rules are the built-in config's rules that block it.
	Rules []string
	// Times are when its events were logged, oldest first.
	Times []time.Time
}

// Kinds are the bombs planted in every set, where the format logs what
// they need (qmail-send's log has no client or account: only the sender
// and uid bombs are planted in it; sendmail logs no uid):
//   - sender-flood: one sender, 45 messages in 50 s, from 5 clients;
//   - pulse: one sender in bursts of 25 messages in 50 s every 2
//     minutes, never 30 in a minute, 150 in an hour by the 7th burst;
//   - hostile: a sender string made to hurt a shell or a firewall
//     command, 40 messages in 40 s from 40 networks;
//   - client-flood: one address, 75 messages in 60 s, each from another
//     sender;
//   - account-flood: one SASL login, 240 messages in 16 minutes, from 4
//     addresses and 8 senders, none of them fast on its own;
//   - stolen-account: one SASL login forging a new sender for each
//     message, one a minute from 2 addresses, 20 messages;
//   - botnet: 150 addresses of one /24, one message each within 50 s,
//     each from another sender;
//   - sasl-guessing: one address failing SASL every 20 s, 30 times;
//   - dictionary: one address trying unknown recipients every 5 s, 60;
//   - local-flood: one local uid, a message every 5 s, 100 of them.
var Kinds = []string{"sender-flood", "pulse", "hostile", "client-flood", "account-flood", "stolen-account",
	"botnet", "sasl-guessing", "dictionary", "local-flood"}

// Write writes a log to w and returns the bombs it planted.
func Write(w io.Writer, o Options) ([]Bomb, error) {
	if !slices.Contains(Formats, o.Format) {
		return nil, fmt.Errorf("unknown format %q (%v)", o.Format, Formats)
	}
	if o.Site == "" {
		o.Site = "small"
	}
	if !slices.Contains(Sites, o.Site) {
		return nil, fmt.Errorf("unknown site %q (%v)", o.Site, Sites)
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
	if o.Gap <= 0 {
		o.Gap = 2 * time.Second
		if o.Site == "large" {
			o.Gap = 10 * time.Millisecond
		}
	}
	g := &generator{o: o, rng: rand.New(rand.NewPCG(o.Seed, 0x626f6d62)), w: bufio.NewWriter(w), t: o.Start.UTC()}
	g.population()
	switch o.Format {
	case "postfix":
		g.write, g.noise, g.authFailed, g.unknownRcpt = g.postfixMessage, g.postfixNoise, g.postfixAuthFailed, g.postfixUnknownRcpt
	case "sendmail":
		g.write, g.noise, g.authFailed, g.unknownRcpt = g.sendmailMessage, g.sendmailNoise, g.sendmailAuthFailed, g.sendmailUnknownRcpt
	case "qmail":
		g.write, g.noise = g.qmailMessage, g.qmailNoise
	}
	bombs := !o.Distinct && !o.Terse
	if o.Site == "large" && bombs {
		g.history()
	}
	ordinary, set := 0, 0
	for g.lines < o.Lines {
		if bombs && ordinary == 50+set*o.BombEvery {
			g.bombs(set)
			set++
		}
		g.ordinary()
		ordinary++
		if !o.Terse && g.rng.IntN(6) == 0 {
			g.noise()
		}
	}
	g.flushPending(time.Time{})
	return g.planted, g.w.Flush()
}

// history writes the three days before a large site's log: an hour a
// day of its big keys' traffic, grown day by day to what it is today
// (each list server 2, 5, then 14 messages a minute, each pool 5, 14,
// then 40), each day within the limits the day before allows. Each key
// sends at a steady pace, so that a day's peak is what its rate says.
// It is what `adapt` learns their normal from; a key that starts big is
// a bomb.
func (g *generator) history() {
	for back, rate := range []struct{ sender, pool float64 }{{2, 5}, {5, 14}, {14, 40}} {
		day := g.o.Start.Add(-time.Duration(3-back) * 24 * time.Hour)
		var ms []*message
		for k := range 8 {
			r := rate.sender
			if k >= 4 {
				r = rate.pool
			}
			step := time.Duration(float64(time.Minute) / r)
			for t := day.Add(time.Duration(g.rng.Int64N(int64(step)))); t.Before(day.Add(time.Hour)); t = t.Add(step) {
				m := &message{t: t, sender: g.senders[g.rng.IntN(len(g.senders))], size: 800 + g.rng.IntN(60000), rcpts: g.recipients(1 + g.rng.IntN(3)), uid: -1}
				if k < 4 {
					g.bigSender(m, k)
				} else {
					g.pool(m, k-4)
				}
				ms = append(ms, m)
			}
		}
		slices.SortStableFunc(ms, func(a, b *message) int { return a.t.Compare(b.t) })
		for _, m := range ms {
			g.write(m)
		}
	}
	g.t = g.o.Start
}

// bigSender makes m one of a large site's four list servers' messages.
func (g *generator) bigSender(m *message, k int) {
	m.sender = fmt.Sprintf("news%d@lists.big.example", k)
	m.client = netip.AddrFrom4([4]byte{198, 51, 130, byte(10 + k)})
	m.host, m.saslUser, m.uid = fmt.Sprintf("lists%d.big.example", k), "", -1
}

// pool makes m come from one of a large site's four providers' pools.
func (g *generator) pool(m *message, p int) {
	m.client = netip.AddrFrom4([4]byte{198, 51, byte(120 + p), byte(10 + g.rng.IntN(60))})
	m.host, m.saslUser, m.uid = fmt.Sprintf("out%d.provider%d.example", m.client.As4()[3], p), "", -1
}

// population makes the ordinary senders and clients: enough of them that
// none comes near a limit however long the log. A small site's clients
// are a few addresses in each of 20 networks; a large site's are spread
// four to a /24, as the Internet's mail servers are, but for the pools.
func (g *generator) population() {
	n := max(300, g.o.Lines/40)
	if g.o.Site == "large" {
		n = max(5000, g.o.Lines/40)
	}
	domains := []string{"example.org", "example.com", "example.net", "mail.example", "lists.example.org"}
	for i := range n {
		g.senders = append(g.senders, fmt.Sprintf("user%d@%s", i, domains[i%len(domains)]))
	}
	for i := range n / 3 {
		if i%10 == 9 {
			// One address in each /48, as a network rule sees them.
			g.clients = append(g.clients, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i), 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x25}))
			continue
		}
		if g.o.Site == "large" {
			net := i / 4
			g.clients = append(g.clients, netip.AddrFrom4([4]byte{100, byte(64 + net/256%64), byte(net % 256), byte(10 + i%4)}))
			continue
		}
		g.clients = append(g.clients, netip.AddrFrom4([4]byte{198, 51, byte(100 + i%20), byte(1 + i/20%250)}))
	}
}

// advance moves the clock by an exponential gap of the given mean.
func (g *generator) advance(mean time.Duration) time.Time {
	g.t = g.t.Add(time.Duration(g.rng.ExpFloat64() * float64(mean)))
	g.flushPending(g.t)
	return g.t
}

// flushPending writes the bomb events due by t (all of them for zero t).
func (g *generator) flushPending(t time.Time) {
	for len(g.pending) > 0 && (t.IsZero() || !g.pending[0].t.After(t)) {
		p := g.pending[0]
		g.pending = g.pending[1:]
		p.write()
	}
}

// at schedules a bomb's event.
func (g *generator) at(t time.Time, write func()) {
	i, _ := slices.BinarySearchFunc(g.pending, t, func(p pending, t time.Time) int {
		if p.t.After(t) {
			return 1
		}
		return -1 // after those at the same time: in the order scheduled
	})
	g.pending = slices.Insert(g.pending, i, pending{t, write})
}

func (g *generator) ordinary() {
	t := g.advance(g.o.Gap)
	i := g.rng.IntN(len(g.senders))
	c := g.clients[i%len(g.clients)]
	sender := g.senders[i]
	if g.o.Distinct {
		sender = fmt.Sprintf("unique%d@%s", g.serial, "many.example")
	}
	m := &message{t: t, sender: sender, client: c, host: hostOf(c),
		size: 800 + g.rng.IntN(60000), rcpts: g.recipients(1 + g.rng.IntN(3)), uid: -1}
	if i%17 == 0 {
		m.saslUser = fmt.Sprintf("user%d", i) // submission
		if g.o.Format == "qmail" {
			m.uid = 1000 + i // qmail-inject: the user's own uid
		}
	}
	if g.o.Site == "large" {
		switch r := g.rng.IntN(1000); {
		case r < 4*3: // a big sender, 18 a minute each (of 6000)
			g.bigSender(m, r/3)
		case r < 4*3+4*20: // a provider's pool, 120 a minute each
			g.pool(m, (r-12)/20)
		}
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
	net          byte // the third byte of the bombs' networks
}{
	"postfix":  {"spam.example", "victim.example", 0},
	"sendmail": {"junk.example", "prey.example", 100},
	"qmail":    {"bulk.example", "", 200},
}

// plant records a bomb and schedules its events at the given offsets
// from the set's start.
func (g *generator) plant(b Bomb, start time.Time, offsets []time.Duration, event func(i int, t time.Time)) {
	for i, d := range offsets {
		t := start.Add(d)
		b.Times = append(b.Times, t)
		g.at(t, func() { event(i, t) })
	}
	g.planted = append(g.planted, b)
}

// every returns n offsets step apart.
func every(n int, step time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i) * step
	}
	return out
}

// bombs plants one set of bombs: each kind at once, on keys and networks
// of their own, so that each crosses only its own rules.
func (g *generator) bombs(set int) {
	names := bombNames[g.o.Format]
	start := g.t.Add(time.Second)
	net := func(n byte, host int) netip.Addr {
		return netip.AddrFrom4([4]byte{203, names.net + n, byte(set % 256), byte(host)})
	}
	msg := func(t time.Time, sender string, client netip.Addr) *message {
		return &message{t: t, sender: sender, client: client, size: 3000, rcpts: g.recipients(1), uid: -1}
	}
	sender := fmt.Sprintf("bomber%d@%s", set, names.spam)
	g.plant(Bomb{Kind: "sender-flood", KeyType: "sender", Key: sender, Rules: []string{"sender-flood"}}, start, every(45, 1100*time.Millisecond),
		func(i int, t time.Time) { g.write(msg(t, sender, net(1, 100+i%5))) })
	pulse := fmt.Sprintf("pulse%d@%s", set, names.spam)
	var bursts []time.Duration
	for b := range 10 {
		for i := range 25 {
			bursts = append(bursts, time.Duration(b)*2*time.Minute+time.Duration(i)*2*time.Second)
		}
	}
	g.plant(Bomb{Kind: "pulse", KeyType: "sender", Key: pulse, Rules: []string{"sender-flood"}}, start, bursts,
		func(i int, t time.Time) { g.write(msg(t, pulse, net(2, 1+i%5))) })
	hostile := fmt.Sprintf("\"$(reboot)%d\"@evil.%s", set, names.spam)
	g.plant(Bomb{Kind: "hostile", KeyType: "sender", Key: hostile, Rules: []string{"sender-flood"}}, start, every(40, time.Second),
		func(i int, t time.Time) { g.write(msg(t, hostile, net(10+byte(i), 9))) })
	uid := 2000 + set%1000
	local := func(i int, t time.Time) {
		m := msg(t, fmt.Sprintf("mallory%d", set), netip.Addr{})
		m.uid = uid
		g.write(m)
	}
	if g.o.Format != "sendmail" {
		g.plant(Bomb{Kind: "local-flood", KeyType: "uid", Key: fmt.Sprint(uid), Rules: []string{"local-flood"}}, start, every(100, 5*time.Second), local)
	}
	if g.o.Format == "qmail" {
		return
	}
	client := net(3, 66)
	g.plant(Bomb{Kind: "client-flood", KeyType: "client_ip", Key: client.String(), Rules: []string{"client-flood"}}, start, every(75, 800*time.Millisecond),
		func(i int, t time.Time) { g.write(msg(t, fmt.Sprintf("x%d.%d@random%d.example", set, i, i), client)) })
	account := fmt.Sprintf("stolen%d@%s", set, names.victim)
	g.plant(Bomb{Kind: "account-flood", KeyType: "sasl_user", Key: account, Rules: []string{"account-flood", "stolen-account"}}, start, every(240, 4*time.Second),
		func(i int, t time.Time) {
			m := msg(t, fmt.Sprintf("sales%d@%s", i%8, names.victim), net(4, 10+i%4))
			m.saslUser, m.size, m.rcpts = account, 5000, g.recipients(5)
			g.write(m)
		})
	forged := fmt.Sprintf("ceo%d@%s", set, names.victim)
	g.plant(Bomb{Kind: "stolen-account", KeyType: "sasl_user", Key: forged, Rules: []string{"stolen-account"}}, start, every(20, time.Minute),
		func(i int, t time.Time) {
			m := msg(t, fmt.Sprintf("ceo%d@partner%d.example", i, i), net(4, 70+i%2))
			m.saslUser = forged
			g.write(m)
		})
	botnet := netip.PrefixFrom(net(5, 0), 24)
	g.plant(Bomb{Kind: "botnet", KeyType: "client_net", Key: botnet.String(), Rules: []string{"botnet"}}, start, every(150, 333*time.Millisecond),
		func(i int, t time.Time) {
			g.write(msg(t, fmt.Sprintf("offer%d@deals%d.example", i, i%40), net(5, 1+i)))
		})
	guesser := net(6, 200)
	g.plant(Bomb{Kind: "sasl-guessing", KeyType: "client_ip", Key: guesser.String(), Rules: []string{"sasl-guessing"}}, start, every(30, 20*time.Second),
		func(i int, t time.Time) { g.authFailed(t, guesser, fmt.Sprintf("admin%d", i%3)) })
	prober := net(6, 201)
	g.plant(Bomb{Kind: "dictionary", KeyType: "client_ip", Key: prober.String(), Rules: []string{"dictionary"}}, start, every(60, 5*time.Second),
		func(i int, t time.Time) { g.unknownRcpt(t, prober, fmt.Sprintf("u%d@mx.example.org", i)) })
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

// step is the time between two lines of one message: a few
// milliseconds, less on a busy site.
func (g *generator) step() time.Duration {
	d := time.Duration(5+g.rng.IntN(40)) * time.Millisecond
	if g.o.Gap < time.Second {
		d = d * g.o.Gap / (2 * time.Second)
	}
	return d
}

func (g *generator) postfixMessage(m *message) {
	g.serial++
	qid := fmt.Sprintf("%X", 0x4A000000+g.serial*7919%0x0FFFFFFF)
	pid := 10000 + g.serial%5000
	t := m.t
	step := func() string { t = t.Add(g.step()); return pfStamp(t) }
	service := "postfix/smtpd"
	if m.saslUser != "" {
		service = "postfix/submission/smtpd"
	}
	client := clientName(m.host, m.client)
	if g.o.Terse {
		g.printf("%s mx1 postfix/qmgr[900]: %s: from=<%s>, size=%d, nrcpt=%d (queue active)\n", pfStamp(t), qid, m.sender, m.size, len(m.rcpts))
		return
	}
	sender := m.sender
	switch {
	case m.uid >= 0: // sendmail(1) on the machine: pickup, not smtpd
		g.printf("%s mx1 postfix/pickup[%d]: %s: uid=%d from=<%s>\n", pfStamp(t), pid, qid, m.uid, m.sender)
		sender = m.sender + "@mx.example.org"
	case m.saslUser != "":
		g.printf("%s mx1 %s[%d]: connect from %s\n", pfStamp(t), service, pid, client)
		g.printf("%s mx1 %s[%d]: %s: client=%s, sasl_method=PLAIN, sasl_username=%s\n", step(), service, pid, qid, client, m.saslUser)
	default:
		g.printf("%s mx1 %s[%d]: connect from %s\n", pfStamp(t), service, pid, client)
		g.printf("%s mx1 %s[%d]: %s: client=%s\n", step(), service, pid, qid, client)
	}
	g.printf("%s mx1 postfix/cleanup[%d]: %s: message-id=<%d.%s>\n", step(), pid+1, qid, g.serial, sender)
	g.printf("%s mx1 postfix/qmgr[900]: %s: from=<%s>, size=%d, nrcpt=%d (queue active)\n", step(), qid, sender, m.size, len(m.rcpts))
	for _, r := range m.rcpts {
		g.printf("%s mx1 postfix/smtp[%d]: %s: to=<%s>, relay=mx.example.org[192.0.2.25]:25, delay=0.4, delays=0.1/0/0.1/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok)\n", step(), pid+2, qid, r)
	}
	g.printf("%s mx1 postfix/qmgr[900]: %s: removed\n", step(), qid)
	if m.uid < 0 {
		g.printf("%s mx1 %s[%d]: disconnect from %s ehlo=1 mail=1 rcpt=%d data=1 quit=1 commands=%d\n", step(), service, pid, client, len(m.rcpts), 4+len(m.rcpts))
	}
}

func (g *generator) postfixAuthFailed(t time.Time, client netip.Addr, user string) {
	g.printf("%s mx1 postfix/submission/smtpd[%d]: warning: unknown[%s]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n", pfStamp(t), 30000+g.rng.IntN(5000), client)
}

func (g *generator) postfixUnknownRcpt(t time.Time, client netip.Addr, rcpt string) {
	g.printf("%s mx1 postfix/smtpd[%d]: NOQUEUE: reject: RCPT from unknown[%s]: 550 5.1.1 <%s>: Recipient address rejected: User unknown in local recipient table; from=<probe@spam.example> to=<%s> proto=ESMTP helo=<probe>\n",
		pfStamp(t), 30000+g.rng.IntN(5000), client, rcpt, rcpt)
}

func (g *generator) postfixNoise() {
	t := pfStamp(g.advance(g.o.Gap / 2))
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

func (g *generator) sendmailAuthFailed(t time.Time, client netip.Addr, user string) {
	g.printf("%s mx1 sm-mta[%d]: 5AKY%010d: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=%s, relay=[%s]\n",
		smStamp(t), 9000+g.rng.IntN(5000), g.rng.IntN(1e9), user, client)
}

func (g *generator) sendmailUnknownRcpt(t time.Time, client netip.Addr, rcpt string) {
	g.printf("%s mx1 sm-mta[%d]: 5AKY%010d: ruleset=check_rcpt, arg1=<%s>, relay=[%s], reject=550 5.1.1 <%s>... User unknown\n",
		smStamp(t), 9000+g.rng.IntN(5000), g.rng.IntN(1e9), rcpt, client, rcpt)
}

func (g *generator) sendmailNoise() {
	t := smStamp(g.advance(g.o.Gap / 2))
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
	sender := m.sender
	if m.uid >= 0 {
		uid = m.uid // qmail-inject, run by a local user
		if !strings.Contains(sender, "@") {
			sender += "@mx.example.org"
		}
	}
	if !g.o.Terse {
		g.printf("%s new msg %d\n", taiStamp(t), id)
	}
	g.printf("%s info msg %d: bytes %d from <%s> qp %d uid %d\n", taiStamp(t), id, m.size, sender, 20000+g.serial%30000, uid)
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
	g.printf("%s status: local 0/10 remote %d/20\n", taiStamp(g.advance(g.o.Gap/2)), g.rng.IntN(20))
}
