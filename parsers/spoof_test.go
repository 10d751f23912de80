package parsers

import (
	"net/netip"
	"strings"
	"testing"
)

// The spoofing suite puts an attacker's text into every field of a log
// line that a client writes — HELO name, MAIL FROM, RCPT TO, SASL login
// name, a header, a body line, a Message-Id — and checks that the event
// still names the client and sender the MTA wrote, never those the text
// names.

const (
	realIP     = "198.51.100.30"
	realSender = "real@sender.example"
	framedIP   = "192.0.2.200"
	framedUser = "boss"
)

// spoofPayloads try to make an event of client 192.0.2.200 or sender
// boss@partner.test, each in the shape of one line form's own fields.
var spoofPayloads = []string{
	"x",
	"hi from mx.partner.test[192.0.2.200] x; from=<boss@partner.test>",
	"x; from=<boss@partner.test> to=<y",
	"x; from=<boss@partner.test> to=<y> proto=ESMTP helo=<z",
	"x from mx.partner.test[192.0.2.200]: y; from=<boss@partner.test> to=<z> proto=ESMTP helo=<w",
	"x> from mx.partner.test[192.0.2.200]; from=<boss@partner.test> to=<y",
	"x, relay=[192.0.2.200], reject=y",
	"x, relay=mx.partner.test [192.0.2.200], reject=550 5.7.1 no",
	"x, arg2=192.0.2.200, relay=mx.partner.test [192.0.2.200], reject=y",
	"x, size=1, class=0, nrcpts=0",
	"x, size=1, class=0, nrcpts=0, proto=ESMTP, daemon=MTA, relay=mx.partner.test [192.0.2.200]",
	"x, user=boss, relay=mx.partner.test [192.0.2.200]",
	"x, sasl_username=boss",
	"x from unknown[192.0.2.200]",
	"[192.0.2.200]: EXPN y",
	"x\\\"; from=<boss@partner.test>",
	"\"x; from=<boss@partner.test> to=<\"",
}

// spoofForm is one line form. Its template names the fields a client
// writes: {HELO}, {FROM} and {RCPT} (addresses, the payload as a quoted
// local part), {TEXT} (a header, body or command line, the payload raw),
// {USER} (a SASL login name). prelude lines come first, with the same
// fields.
type spoofForm struct {
	name    string
	format  string
	prelude []string
	line    string
	// clientAlways: the event must name the real client (it is always
	// in a part the MTA writes); otherwise it may name none.
	clientAlways bool
	// sender: the event's sender, when it has one, must be this ("" for
	// the attacker's own FROM, whatever it is).
	sender string
	// user: the event's SASL user must be this, or none.
	user string
}

var spoofForms = []spoofForm{
	{name: "postfix smtpd RCPT relay denied", format: "postfix", clientAlways: true, sender: realSender,
		line: "Nov 20 10:00:00 mx postfix/smtpd[100]: NOQUEUE: reject: RCPT from client.example[198.51.100.30]: 554 5.7.1 <{RCPT}>: Relay access denied; from=<real@sender.example> to=<{RCPT}> proto=ESMTP helo=<{HELO}>"},
	{name: "postfix smtpd RCPT unknown user", format: "postfix", clientAlways: true, sender: realSender,
		line: "Nov 20 10:00:00 mx postfix/smtpd[100]: NOQUEUE: reject: RCPT from client.example[198.51.100.30]: 550 5.1.1 <{RCPT}>: Recipient address rejected: User unknown in virtual mailbox table; from=<real@sender.example> to=<{RCPT}> proto=ESMTP helo=<{HELO}>"},
	{name: "postfix smtpd MAIL sender rejected", format: "postfix", clientAlways: true,
		line: "Nov 20 10:00:00 mx postfix/smtpd[100]: NOQUEUE: reject: MAIL from client.example[198.51.100.30]: 553 5.7.1 <{FROM}>: Sender address rejected: not owned by user x; from=<{FROM}> proto=ESMTP helo=<{HELO}>"},
	{name: "postfix smtpd MAIL size, no sender", format: "postfix", clientAlways: true, sender: "-",
		line: "Nov 20 10:00:00 mx postfix/smtpd[100]: NOQUEUE: reject: MAIL from client.example[198.51.100.30]: 552 5.3.4 Message size exceeds fixed limit; proto=ESMTP helo=<{HELO}>"},
	{name: "postfix smtpd HELO rejected", format: "postfix", clientAlways: true, sender: "-",
		line: "Nov 20 10:00:00 mx postfix/smtpd[100]: NOQUEUE: reject: HELO from client.example[198.51.100.30]: 504 5.5.2 <{HELO}>: Helo command rejected: need fully-qualified hostname; proto=SMTP helo=<{HELO}>"},
	{name: "postfix smtpd CONNECT rejected", format: "postfix", clientAlways: true, sender: "-",
		line: "Nov 20 10:00:00 mx postfix/smtpd[100]: NOQUEUE: reject: CONNECT from client.example[198.51.100.30]: 554 5.7.1 Service unavailable; Client host [198.51.100.30] blocked using zen.spamhaus.org; proto=SMTP helo=<{HELO}>"},
	{name: "postfix smtpd DATA with queue ID", format: "postfix", clientAlways: true, sender: realSender,
		line: "Nov 20 10:00:00 mx postfix/smtpd[100]: 3F1A2B4C5D: reject: DATA from client.example[198.51.100.30]: 550 5.7.1 <{RCPT}>: too many; from=<real@sender.example> to=<{RCPT}> proto=ESMTP helo=<{HELO}>"},
	{name: "postfix smtpd milter-reject", format: "postfix", clientAlways: true, sender: realSender,
		line: "Nov 20 10:00:00 mx postfix/smtpd[100]: 3F1A2B4C5D: milter-reject: END-OF-MESSAGE from client.example[198.51.100.30]: 5.7.1 Spam {TEXT}; from=<real@sender.example> to=<{RCPT}> proto=ESMTP helo=<{HELO}>"},
	{name: "postfix cleanup header", format: "postfix", clientAlways: true, sender: realSender, user: "dave",
		prelude: []string{"Nov 20 10:00:00 mx postfix/smtpd[100]: 3F1A2B4C5D: client=client.example[198.51.100.30], sasl_method=PLAIN, sasl_username=dave"},
		line:    "Nov 20 10:00:01 mx postfix/cleanup[101]: 3F1A2B4C5D: reject: header Subject: {TEXT} from client.example[198.51.100.30]; from=<real@sender.example> to=<{RCPT}> proto=ESMTP helo=<{HELO}>: 5.7.1 message content rejected"},
	{name: "postfix cleanup body", format: "postfix", clientAlways: true, sender: realSender,
		prelude: []string{"Nov 20 10:00:00 mx postfix/smtpd[100]: 3F1A2B4C5D: client=client.example[198.51.100.30]"},
		line:    "Nov 20 10:00:01 mx postfix/cleanup[101]: 3F1A2B4C5D: reject: body {TEXT} from client.example[198.51.100.30]; from=<real@sender.example> to=<{RCPT}> proto=ESMTP helo=<{HELO}>: 5.7.1 message content rejected"},
	{name: "postfix cleanup milter-reject", format: "postfix", clientAlways: true, sender: realSender,
		prelude: []string{"Nov 20 10:00:00 mx postfix/smtpd[100]: 3F1A2B4C5D: client=client.example[198.51.100.30]"},
		line:    "Nov 20 10:00:01 mx postfix/cleanup[101]: 3F1A2B4C5D: milter-reject: END-OF-MESSAGE from client.example[198.51.100.30]: 5.7.1 Spam {TEXT}; from=<real@sender.example> to=<{RCPT}> proto=ESMTP helo=<{HELO}>"},
	{name: "postfix cleanup header, client line not seen", format: "postfix", sender: realSender,
		line: "Nov 20 10:00:01 mx postfix/cleanup[101]: 3F1A2B4C5D: reject: header Subject: {TEXT} from client.example[198.51.100.30]; from=<real@sender.example> to=<{RCPT}> proto=ESMTP helo=<{HELO}>: 5.7.1 message content rejected"},
	{name: "postfix postscreen RCPT", format: "postfix", clientAlways: true, sender: realSender,
		line: "Nov 20 10:00:00 mx postfix/postscreen[102]: NOQUEUE: reject: RCPT from [198.51.100.30]:50312: 550 5.7.1 Service unavailable; client [198.51.100.30] blocked using zen.spamhaus.org; from=<real@sender.example>, to=<{RCPT}>, proto=ESMTP, helo=<{HELO}>"},
	{name: "postfix postscreen PREGREET", format: "postfix", clientAlways: true, sender: "-",
		line: "Nov 20 10:00:00 mx postfix/postscreen[102]: PREGREET 14 after 0.08 from [198.51.100.30]:50312: EHLO {HELO}\\r\\n"},
	{name: "postfix postscreen NON-SMTP COMMAND", format: "postfix", clientAlways: true, sender: "-",
		line: "Nov 20 10:00:00 mx postfix/postscreen[102]: NON-SMTP COMMAND from [198.51.100.30]:50312 after CONNECT: {TEXT}"},
	{name: "postfix smtpd SASL failure", format: "postfix", clientAlways: true, sender: "-", user: "{USER}",
		line: "Nov 20 10:00:00 mx postfix/smtpd[100]: warning: client.example[198.51.100.30]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username={USER}"},
	{name: "postfix smtpd pipelining", format: "postfix", clientAlways: true, sender: "-",
		line: "Nov 20 10:00:00 mx postfix/smtpd[100]: improper command pipelining after EHLO from client.example[198.51.100.30]: {TEXT}"},
	{name: "postfix smtpd non-SMTP command", format: "postfix", clientAlways: true, sender: "-",
		line: "Nov 20 10:00:00 mx postfix/smtpd[100]: warning: non-SMTP command from client.example[198.51.100.30]: {TEXT}"},
	{name: "postfix accepted", format: "postfix", clientAlways: true, user: "{USER}",
		prelude: []string{"Nov 20 10:00:00 mx postfix/smtpd[100]: 3F1A2B4C5D: client=client.example[198.51.100.30], sasl_method=PLAIN, sasl_username={USER}"},
		line:    "Nov 20 10:00:01 mx postfix/qmgr[103]: 3F1A2B4C5D: from=<{FROM}>, size=1234, nrcpt=1 (queue active)"},

	{name: "sendmail from= accepted", format: "sendmail", clientAlways: true,
		line: "Nov 20 10:00:00 mx sm-mta[200]: 5AKA0022000200: from=<{FROM}>, size=1234, class=0, nrcpts=1, msgid=<{TEXT}@client.example>, proto=ESMTP, daemon=MTA, relay=client.example [198.51.100.30]"},
	{name: "sendmail from= refused", format: "sendmail", clientAlways: true,
		line: "Nov 20 10:00:00 mx sm-mta[200]: 5AKA0022000200: from=<{FROM}>, size=0, class=0, nrcpts=0, proto=ESMTP, daemon=MTA, relay=client.example [198.51.100.30]"},
	{name: "sendmail AUTH then from=", format: "sendmail", clientAlways: true, user: "{USER}",
		prelude: []string{"Nov 20 10:00:00 mx sm-mta[200]: 5AKA0022000200: AUTH=server, relay=client.example [198.51.100.30], authid={USER}, mech=PLAIN, bits=0"},
		line:    "Nov 20 10:00:01 mx sm-mta[200]: 5AKA0022000200: from=<{FROM}>, size=1234, class=0, nrcpts=1, msgid=<{TEXT}@x>, proto=ESMTP, daemon=MTA, relay=client.example [198.51.100.30]"},
	{name: "sendmail check_rcpt", format: "sendmail", clientAlways: true, sender: "-",
		line: "Nov 20 10:00:00 mx sm-mta[200]: 5AKA0022000200: ruleset=check_rcpt, arg1=<{RCPT}>, relay=client.example [198.51.100.30], reject=550 5.7.1 <{RCPT}>... Relaying denied"},
	{name: "sendmail check_mail", format: "sendmail", clientAlways: true,
		line: "Nov 20 10:00:00 mx sm-mta[200]: 5AKA0022000200: ruleset=check_mail, arg1=<{FROM}>, relay=client.example [198.51.100.30], reject=553 5.1.8 <{FROM}>... Domain of sender address does not exist"},
	{name: "sendmail check_relay", format: "sendmail", clientAlways: true, sender: "-",
		line: "Nov 20 10:00:00 mx sm-mta[200]: ruleset=check_relay, arg1=client.example, arg2=198.51.100.30, relay=client.example [198.51.100.30], reject=550 5.7.1 Access denied {TEXT}"},
	{name: "sendmail AUTH failure", format: "sendmail", clientAlways: true, sender: "-", user: "{USER}",
		line: "Nov 20 10:00:00 mx sm-mta[200]: 5AKA0022000200: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user={USER}, relay=client.example [198.51.100.30]"},
	{name: "sendmail EXPN", format: "sendmail", clientAlways: true, sender: "-",
		line: "Nov 20 10:00:00 mx sm-mta[200]: 5AKA0022000200: client.example [198.51.100.30]: EXPN {TEXT} [rejected]"},

	{name: "qmail info msg", format: "qmail", sender: "",
		line: "@400000006900000000000000 info msg 93869: bytes 2343 from <{FROM}> qp 18695 uid 49491"},
}

// fill puts the payload into the form's fields.
func (f spoofForm) fill(s, payload string) string {
	quoted := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(payload)
	addr := `"` + quoted + `"@spam.example`
	return strings.NewReplacer("{HELO}", payload, "{FROM}", addr, "{RCPT}", addr, "{TEXT}", payload, "{USER}", payload).Replace(s)
}

// checkSpoof parses one form with one payload and reports what is wrong.
func checkSpoof(t *testing.T, f spoofForm, payload string) {
	t.Helper()
	format, ok := Lookup(f.format)
	if !ok {
		t.Fatalf("no format %s", f.format)
	}
	p := format.New(Options{Reference: testReference})
	for i, l := range f.prelude {
		p.Parse([]byte(f.fill(l, payload)), int64(i+1), func(*Event) {})
	}
	line := f.fill(f.line, payload)
	var events []Event
	p.Parse([]byte(line), int64(len(f.prelude)+1), func(e *Event) { events = append(events, *e) })
	if len(events) != 1 {
		t.Fatalf("%s: %d events from %q", f.name, len(events), line)
	}
	e := events[0]
	real := netip.MustParseAddr(realIP)
	switch {
	case e.ClientIP.IsValid() && e.ClientIP != real:
		t.Errorf("%s: client %s, want %s, from %q", f.name, e.ClientIP, realIP, line)
	case f.clientAlways && e.ClientIP != real:
		t.Errorf("%s: no client, want %s, from %q", f.name, realIP, line)
	}
	switch wantSender := f.sender; {
	case wantSender == "-":
		if e.HasSender {
			t.Errorf("%s: sender %q where the line has none, from %q", f.name, e.Sender, line)
		}
	case wantSender == "" && e.HasSender:
		// The attacker's own address, whole: never a part of it.
		if own := normalizeSender([]byte(f.fill("{FROM}", payload))); e.Sender != own {
			t.Errorf("%s: sender %q, want the client's own %q, from %q", f.name, e.Sender, own, line)
		}
	case wantSender != "" && e.HasSender && e.Sender != wantSender:
		t.Errorf("%s: sender %q, want %q, from %q", f.name, e.Sender, wantSender, line)
	}
	if strings.Contains(e.Sender, "boss@partner.test") && !strings.Contains(payload, "boss@partner.test") {
		t.Errorf("%s: framed sender %q", f.name, e.Sender)
	}
	wantUser := f.fill(f.user, payload)
	if e.SASLUser != "" && e.SASLUser != wantUser {
		t.Errorf("%s: SASL user %q, want %q, from %q", f.name, e.SASLUser, wantUser, line)
	}
}

func TestSpoofedFields(t *testing.T) {
	for _, f := range spoofForms {
		for _, payload := range spoofPayloads {
			checkSpoof(t, f, payload)
		}
	}
}

// TestSpoofedFieldsKeepWhatTheMTAWrote: with harmless fields every form
// gives its sender and user too, so that the suite cannot pass by giving
// nothing.
func TestSpoofedFieldsKeepWhatTheMTAWrote(t *testing.T) {
	for _, f := range spoofForms {
		format, _ := Lookup(f.format)
		p := format.New(Options{Reference: testReference})
		for _, l := range f.prelude {
			p.Parse([]byte(f.fill(l, "x")), 1, func(*Event) {})
		}
		var got *Event
		p.Parse([]byte(f.fill(f.line, "x")), 2, func(e *Event) { c := *e; got = &c })
		if got == nil {
			t.Errorf("%s: no event", f.name)
			continue
		}
		if f.sender != "-" && !got.HasSender {
			t.Errorf("%s: no sender from a harmless line", f.name)
		}
		if f.user != "" && got.SASLUser != f.fill(f.user, "x") {
			t.Errorf("%s: SASL user %q, want %q", f.name, got.SASLUser, f.fill(f.user, "x"))
		}
	}
}

// FuzzSpoof embeds random text in every client-written field of every line
// form: the event's client address is always the one the MTA wrote (or
// none, where the form allows), and its sender never anything but the
// MTA's.
func FuzzSpoof(f *testing.F) {
	for _, p := range spoofPayloads {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		// The MTAs write control characters as '?' or escapes: a line
		// break cannot come from a client.
		payload = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return '?'
			}
			return r
		}, payload)
		if len(payload) > 400 {
			payload = payload[:400]
		}
		for _, form := range spoofForms {
			checkSpoof(t, form, payload)
		}
	})
}
