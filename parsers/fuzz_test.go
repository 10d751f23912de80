package parsers

import (
	"encoding/json"
	"testing"
)

// fuzzParser checks what must hold for any input: no panic, and every event
// encodes as valid JSON with a kind and a time.
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
		// Twice, so that a line can meet its own correlation state.
		for i := int64(1); i <= 2; i++ {
			p.Parse(line, i, func(e *Event) {
				b := e.AppendJSON(nil)
				if !json.Valid(b) {
					t.Fatalf("invalid JSON %s", b)
				}
				if e.Kind == KindNone || e.Time.IsZero() {
					t.Fatalf("incomplete event %s", b)
				}
			})
		}
		fm.Sniff(line)
	})
}

func FuzzPostfix(f *testing.F) {
	fuzzParser(f, "postfix", []string{
		"Nov 20 10:00:02 mx1 postfix/submission/smtpd[1201]: 4F2A1B3C4D: client=laptop.example.net[198.51.100.7], sasl_method=PLAIN, sasl_username=alice@example.org",
		"Nov 20 10:00:02 mx1 postfix/qmgr[900]: 4F2A1B3C4D: from=<Alice@EXAMPLE.Org>, size=1234, nrcpt=2 (queue active)",
		"2026-03-15T00:16:31.603404+01:00 helga postfix/qmgr[3163066]: 4PbqCg429Xz3tBr: from=<u@example.net>, size=1135, nrcpt=1 (queue active)",
		"Nov 20 10:07:00 mx1 postfix/pickup[1400]: 3AB12C0F11: uid=1000 from=<www-data>",
	})
}

func FuzzSendmail(f *testing.F) {
	fuzzParser(f, "sendmail", []string{
		"Nov 20 10:00:00 mx sm-mta[2001]: 5AKA00aa002001: AUTH=server, relay=client.example.net [198.51.100.8], authid=carol, mech=PLAIN, bits=0",
		"Nov 20 10:00:01 mx sm-mta[2001]: 5AKA00aa002001: from=<carol@Example.ORG>, size=2262, class=0, nrcpts=2, msgid=<1@example.org>, proto=ESMTPA, daemon=MTA, relay=client.example.net [198.51.100.8]",
		"Jun 17 14:37:39 <mail.info> robin sm-mta[2794]: 55HIbcGI002794: from=<root@yourhost.com>, size=108, class=0, nrcpts=1, proto=ESMTP, daemon=MTA-v4, relay=[192.168.1.45]",
	})
}

func FuzzQmail(f *testing.F) {
	fuzzParser(f, "qmail", []string{
		"@4000000038c3eeb027f6b0a4 info msg 93869: bytes 2343 from <dave@Sill.ORG> qp 18695 uid 49491",
		"Sep  6 07:33:33 sd6 qmail: 1157520813.485077 info msg 42: bytes 10 from <x@example.com> qp 1 uid 7791",
		"@4000000038c3eeb027f41c7c new msg 93869",
	})
}
