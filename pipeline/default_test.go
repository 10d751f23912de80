package pipeline_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/config"
)

// TestDefaultConfigStopsEachKindOfBomb: the built-in config blocks each
// kind of bomb planted in a small site's ordinary traffic — and no
// ordinary key — and says how many messages got through before each.
func TestDefaultConfigStopsEachKindOfBomb(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 14))
	var ms []msg
	// Ordinary traffic: two hours, a message every few seconds from 300
	// senders, 100 clients and 30 SASL users each with one or two senders.
	for s := 0; s < 2*3600; s += 1 + rng.IntN(8) {
		u := rng.IntN(300)
		m := msg{at: time.Duration(s) * time.Second, sender: fmt.Sprintf("user%d@example.org", u), ip: fmt.Sprintf("198.51.%d.%d", 100+u%7, 1+u%100)}
		if u%10 == 0 {
			m.sasl = fmt.Sprintf("login%d", u%30)
			m.sender = fmt.Sprintf("login%d@example.org", u%30+30*(rng.IntN(2)))
		}
		ms = append(ms, m)
	}
	var extra []string
	// A sender in bursts of 25 every 8 minutes: never 30 in a minute.
	for b := range 10 {
		for i := range 25 {
			ms = append(ms, msg{at: 10*time.Minute + time.Duration(b)*8*time.Minute + time.Duration(i)*2*time.Second,
				sender: "pulse@bomb.example", ip: fmt.Sprintf("203.0.113.%d", 1+i%5)})
		}
	}
	// A stolen account: a forged sender per message, from two addresses,
	// one a minute.
	for i := range 20 {
		ms = append(ms, msg{at: 30*time.Minute + time.Duration(i)*time.Minute, sender: fmt.Sprintf("ceo%d@partner%d.example", i, i),
			ip: fmt.Sprintf("192.0.2.%d", 70+i%2), sasl: "victim"})
	}
	// A flood with a hostile sender string, from many clients.
	for i := range 40 {
		ms = append(ms, msg{at: 50*time.Minute + time.Duration(i)*time.Second, sender: `"$(reboot)"@evil.example`, ip: fmt.Sprintf("203.0.113.%d", 100+i)})
	}
	ts := func(d time.Duration) string { return base.Add(d).Format(time.RFC3339) }
	// SASL password guessing: a try every 20 s.
	for i := range 30 {
		extra = append(extra, fmt.Sprintf("%s mx postfix/smtpd[9]: warning: unknown[192.0.2.200]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", ts(20*time.Minute+time.Duration(i)*20*time.Second)))
	}
	// A dictionary attack: unknown recipients, one every 5 s.
	for i := range 60 {
		extra = append(extra, fmt.Sprintf("%s mx postfix/smtpd[8]: NOQUEUE: reject: RCPT from unknown[192.0.2.201]: 550 5.1.1 <u%d@example.org>: Recipient address rejected: User unknown in local recipient table; from=<x@spam.example> to=<u%d@example.org> proto=ESMTP helo=<x>",
			ts(40*time.Minute+time.Duration(i)*5*time.Second), i, i))
	}
	// A local user flooding through sendmail: a message every 5 s.
	for i := range 100 {
		at := ts(60*time.Minute + time.Duration(i)*5*time.Second)
		extra = append(extra, fmt.Sprintf("%s mx postfix/pickup[7]: LOCQ%05d: uid=1005 from=<mallory>", at, i),
			fmt.Sprintf("%s mx postfix/qmgr[2]: LOCQ%05d: from=<mallory%d@mx.example>, size=900, nrcpt=1 (queue active)", at, i, i%3))
	}
	slices.SortStableFunc(ms, func(a, b msg) int { return int(a.at - b.at) })
	lines := append(postfixLines(ms...), extra...)
	slices.SortStableFunc(lines, func(a, b string) int { return strings.Compare(a[:20], b[:20]) })
	got, _ := replay(t, config.Default(), nil, nil, writeLog(t, lines...))

	want := map[string]bool{
		"sender-flood pulse@bomb.example":       true,
		"stolen-account victim":                 true,
		`sender-flood "$(reboot)"@evil.example`: true,
		"sasl-guessing 192.0.2.200":             true,
		"dictionary 192.0.2.201":                true,
		"local-flood 1005":                      true,
	}
	keys := blockedKeys(got)
	for k := range want {
		if !keys[k] {
			t.Errorf("bomb %q not blocked", k)
		}
	}
	for k := range keys {
		if !want[k] {
			t.Errorf("blocked %q, which is no bomb", k)
		}
	}
	for _, d := range got {
		if d.Event == "block" {
			t.Logf("%s %s: blocked at %s with %g over %g per %s", d.Rule, d.Key, d.Time.Sub(base), d.Value, d.Limit, d.Window)
		}
	}
}
