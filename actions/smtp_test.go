package actions

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestMailOverSMTP: with smtp set, a notice goes to that MTA over SMTP,
// from the null sender, to the recipients, a local name made an address.
func TestMailOverSMTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		var dialog strings.Builder
		c.Write([]byte("220 mx ESMTP\r\n"))
		data := false
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			dialog.WriteString(line)
			switch {
			case data && line == ".\r\n":
				data = false
				c.Write([]byte("250 queued\r\n"))
			case data:
			case strings.HasPrefix(line, "DATA"):
				data = true
				c.Write([]byte("354 go on\r\n"))
			case strings.HasPrefix(line, "QUIT"):
				c.Write([]byte("221 bye\r\n"))
				got <- dialog.String()
				return
			default:
				c.Write([]byte("250 ok\r\n"))
			}
		}
		got <- dialog.String()
	}()
	m := &Mail{ActionName: "notice", To: []string{"postmaster", "ops@example.org"}, SMTP: ln.Addr().String(), Period: time.Hour}
	d := Detection{Event: "block", Rule: "flood", KeyType: "sender", Key: "x@example.com", Value: 31, Limit: 30, Window: time.Minute,
		Time: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)}
	if err := m.Run(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	dialog := <-got
	for _, want := range []string{"MAIL FROM:<>", "RCPT TO:<postmaster@localhost>", "RCPT TO:<ops@example.org>",
		"Subject: bombwatch: flood blocked sender x@example.com\r\n", "Key:    sender \"x@example.com\"\r\n"} {
		if !strings.Contains(dialog, want) {
			t.Errorf("the SMTP dialog lacks %q:\n%s", want, dialog)
		}
	}
	// A refused connection is the action's failure, tried again later.
	ln.Close()
	d.Key = "y@example.com"
	if err := m.Run(context.Background(), d); err == nil {
		t.Error("no error with nothing listening")
	}
}
