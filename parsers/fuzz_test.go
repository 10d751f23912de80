package parsers

import (
	"bytes"
	"encoding/json"
	"testing"
)

// fuzzParser checks what must hold for any input: no panic, and every event
// encodes as valid JSON with a kind and a time. An input is up to 8 lines,
// read in order, twice: a transaction's lines meet each other's state (a
// sendmail from= line after its lost connection, a delivery after it).
func fuzzParser(f *testing.F, format string, seeds []string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	fm, ok := Lookup(format)
	if !ok {
		f.Fatalf("no format %q", format)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		p := fm.New(Options{Reference: testReference})
		lines := bytes.SplitN(line, []byte("\n"), 8)
		n := int64(0)
		for range 2 {
			for _, l := range lines {
				n++
				p.Parse(l, n, func(e *Event) {
					b := e.AppendJSON(nil)
					if !json.Valid(b) {
						t.Fatalf("invalid JSON %s", b)
					}
					if e.Kind == KindNone || e.Time.IsZero() {
						t.Fatalf("incomplete event %s", b)
					}
				})
				fm.Sniff(l)
			}
		}
	})
}

func FuzzPostfix(f *testing.F) {
	fuzzParser(f, "postfix", []string{
		"Nov 20 10:00:02 mx1 postfix/submission/smtpd[1201]: 4F2A1B3C4D: client=laptop.example.net[198.51.100.7], sasl_method=PLAIN, sasl_username=alice@example.org",
		"Nov 20 10:00:02 mx1 postfix/qmgr[900]: 4F2A1B3C4D: from=<Alice@EXAMPLE.Org>, size=1234, nrcpt=2 (queue active)",
		"2026-03-15T00:16:31.603404+01:00 helga postfix/qmgr[3163066]: 4PbqCg429Xz3tBr: from=<u@example.net>, size=1135, nrcpt=1 (queue active)",
		"Nov 20 10:07:00 mx1 postfix/pickup[1400]: 3AB12C0F11: uid=1000 from=<www-data>",
		"Nov 20 10:00:00 mx postfix/smtpd[300]: connect from client.example.net[198.51.100.20]",
		"Nov 20 10:00:07 mx postfix/smtpd[300]: lost connection after AUTH from client.example.net[198.51.100.20]",
		"Nov 20 10:00:08 mx postfix/smtpd[300]: disconnect from client.example.net[198.51.100.20] ehlo=1 auth=0/1 commands=1/2",
		"Nov 20 10:01:01 mx postfix/submission/smtpd[301]: warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=admin",
		"Nov 20 10:02:00 mx postfix/smtpd[303]: NOQUEUE: reject: RCPT from unknown[192.0.2.236]: 554 5.7.1 <r@example.org>: Relay access denied; from=<s@example.com> to=<r@example.org> proto=ESMTP helo=<x>",
		"Nov 20 10:02:03 mx postfix/postscreen[473]: NOQUEUE: reject: RCPT from [216.245.194.173]:60591: 550 5.7.1 Service unavailable; from=<s@example.com>, to=<g@example.com>, proto=ESMTP, helo=<b>",
		"Nov 20 10:02:04 mx postfix/postscreen[473]: PREGREET 14 after 0.08 from [192.0.2.2]:59415: EHLO ylmf-pc",
		"Nov 20 10:02:07 mx postfix/smtpd[304]: warning: Connection rate limit exceeded: 31 from spamhost.example.org[192.0.2.123] for service smtp",
		"Nov 20 10:04:00 mx postfix/cleanup[309]: 9AB12C0F11: info: header Date: Thu, 20 Nov 2025 09:03:59 +0100 (CET) from m.example.com[192.0.2.152]; from=<n@example.com> to=<a@example.org> proto=ESMTP helo=<x>",
		"Nov 20 10:05:00 mx postfix/cleanup[309]: 7F7F7F7F7F: reject: header Subject: win from m.example.com[192.0.2.153]; from=<w@example.com> to=<a@example.org> proto=ESMTP helo=<x>: 5.7.1 rejected",
		"<22>1 2026-11-20T12:00:01+01:00 mx postfix/qmgr 900 - [meta note=\"a \\] b\"] AB12CD34EF: from=<r@example.org>, size=3, nrcpt=1 (queue active)",
	})
}

func FuzzSendmail(f *testing.F) {
	fuzzParser(f, "sendmail", []string{
		"Nov 20 10:00:00 mx sm-mta[2001]: 5AKA00aa002001: AUTH=server, relay=client.example.net [198.51.100.8], authid=carol, mech=PLAIN, bits=0",
		"Nov 20 10:00:01 mx sm-mta[2001]: 5AKA00aa002001: from=<carol@Example.ORG>, size=2262, class=0, nrcpts=2, msgid=<1@example.org>, proto=ESMTPA, daemon=MTA, relay=client.example.net [198.51.100.8]",
		"Jun 17 14:37:39 <mail.info> robin sm-mta[2794]: 55HIbcGI002794: from=<root@yourhost.com>, size=108, class=0, nrcpts=1, proto=ESMTP, daemon=MTA-v4, relay=[192.168.1.45]",
		"Nov 20 11:00:00 mx sm-mta[400]: 5AKB00aa000400: ruleset=check_rcpt, arg1=<x@example.org>, relay=dsl.example.net [198.51.100.40] (may be forged), reject=550 5.7.1 <x@example.org>... Relaying denied",
		"Nov 20 11:00:04 mx sm-mta[404]: 5AKB00dd000404: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): checkpass failed, user=criminal, relay=[192.0.2.100], relay=[192.0.2.4] (may be forged)",
		"Nov 20 11:00:05 mx sm-mta[405]: 5AKB00ee000405: [190.5.230.178]: possible SMTP attack: command=AUTH, count=5",
		"Nov 20 11:00:06 mx sm-mta[406]: 5AKB00ff000406: lost input channel from host.example.net [192.0.2.50] to MTA after rcpt",
		"Nov 20 11:00:07 mx sm-mta[407]: 5AKB00gg000407: some-host.example.org [192.0.2.194] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA",
		"Nov 20 11:00:03 mx sm-mta[403]: 5AKB00cc000403: rejecting commands from [209.15.212.253] due to pre-greeting traffic after 0 seconds",
		// Transactions of several lines.
		"Nov 20 11:00:07 mx sm-mta[411]: 5AKB00jj000411: collect: premature EOM: unexpected close\n" +
			"Nov 20 11:00:07 mx sm-mta[411]: 5AKB00jj000411: from=<half@example.com>, size=1400, class=0, nrcpts=1, proto=ESMTP, daemon=MTA, relay=[192.0.2.51]",
		"Nov 20 11:00:08 mx sm-mta[412]: 5AKB00kk000412: <nobody@example.org>... User unknown\n" +
			"Nov 20 11:00:08 mx sm-mta[412]: 5AKB00kk000412: <other@example.org>... User unknown\n" +
			"Nov 20 11:00:08 mx sm-mta[412]: 5AKB00kk000412: from=<probe@spam.example>, size=0, class=0, nrcpts=0, proto=ESMTP, daemon=MTA, relay=[192.0.2.52]",
		"Nov 20 10:00:04 mx sendmail[2004]: 5AKA00dd002004: from=maddingue, size=2039, class=0, nrcpts=1, msgid=<3@jupiter.example>, relay=maddingue@localhost\n" +
			"Nov 20 10:00:05 mx sm-mta[2007]: 5AKA00de002007: from=<maddingue@jupiter.example>, size=2262, class=0, nrcpts=1, msgid=<3@jupiter.example>, proto=ESMTP, daemon=MTA, relay=localhost [127.0.0.1]\n" +
			"Nov 20 10:00:05 mx sendmail[2004]: 5AKA00dd002004: to=cpan-testers@perl.org, ctladdr=maddingue (501/20), delay=00:00:01, mailer=relay, relay=localhost [127.0.0.1], stat=Sent",
		"Nov 20 10:00:30 mx sm-mta[2010]: AUTH=server, relay=client.example.net [198.51.100.9], authid=dave, mech=PLAIN, bits=0\n" +
			"Nov 20 10:00:31 mx sm-mta[2010]: 5AKA00ea002010: from=<dave@example.org>, size=300, class=0, nrcpts=1, proto=ESMTPA, daemon=MTA, relay=client.example.net [198.51.100.9]\n" +
			"Nov 20 10:00:32 mx sm-mta[2011]: 5AKA00ea002010: to=<u@example.net>, delay=00:00:01, mailer=esmtp, stat=Sent",
	})
}

func FuzzQmail(f *testing.F) {
	fuzzParser(f, "qmail", []string{
		"@4000000038c3eeb027f6b0a4 info msg 93869: bytes 2343 from <dave@Sill.ORG> qp 18695 uid 49491",
		"Sep  6 07:33:33 sd6 qmail: 1157520813.485077 info msg 42: bytes 10 from <x@example.com> qp 1 uid 7791",
		"@4000000038c3eeb027f41c7c new msg 93869",
		"@4000000038c3eeb027f41c7c tcpserver: ok 26162 mx.example.net:209.114.200.128:25 :194.206.24.40::1521",
		"@4000000038c3eeb027f41c7c rblsmtpd: 194.206.24.40 pid 26162: 451 http://www.spamhaus.org/",
		"Jun 30 15:13:33 ns1 rblsmtpd: relays.ordb.org blocked 193.111.120.47 ordb-test.null.dk -",
		"Sep  6 07:18:29 sd6 qmail: 1157519909.633171 qmail-smtpd: 421 badiprbl: ip 198.51.100.54 rbl: example.com",
	})
}

func FuzzJournald(f *testing.F) {
	fuzzParser(f, "journald", []string{
		`{"__REALTIME_TIMESTAMP":"1763632800000000","_HOSTNAME":"mx","SYSLOG_IDENTIFIER":"postfix/smtpd","_PID":"500","MESSAGE":"4F00000001: client=a.example.net[198.51.100.60], sasl_method=PLAIN, sasl_username=bob"}`,
		`{"__REALTIME_TIMESTAMP":"1763632801000000","_HOSTNAME":"mx","SYSLOG_IDENTIFIER":"postfix/qmgr","_PID":"900","MESSAGE":"4F00000001: from=<bob@example.org>, size=42, nrcpt=1 (queue active)"}`,
		`{"__REALTIME_TIMESTAMP":"1763632802000000","SYSLOG_IDENTIFIER":"postfix/smtpd","MESSAGE":[119,97,255]}`,
	})
}

// FuzzSendmailFieldAt: the field finder that skips the bytes that do not
// matter finds what a plain scan of every byte finds.
func FuzzSendmailFieldAt(f *testing.F) {
	for _, s := range []string{`<a@b>, size=1`, `"x, size=1"@b, size=2`, `<"a\"b, size=">, size=3`, `<<a>>, msgid=<x, y>, proto=ESMTP`, `\, size=`} {
		f.Add(s, ", size=")
		f.Add(s, ", ")
	}
	f.Fuzz(func(t *testing.T, v, sep string) {
		if sep == "" {
			return
		}
		if got, want := sendmailFieldAt([]byte(v), sep), plainFieldAt([]byte(v), sep); got != want {
			t.Errorf("sendmailFieldAt(%q, %q) = %d, want %d", v, sep, got, want)
		}
	})
}

// plainFieldAt is sendmailFieldAt a byte at a time.
func plainFieldAt(v []byte, sep string) int {
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
