package actions

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/smtp"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Mail sends the postmaster a notice of each block through the local
// sendmail binary, as FML warned of bombs: one notice per key per Period
// (a negative cache), and at most PerHour notices an hour, so that a bomb
// of many keys cannot become a bomb of notices.
type Mail struct {
	ActionName string
	To         []string
	Sendmail   string // default /usr/sbin/sendmail
	// SMTP, when set (host:port), is where notices go instead: the local
	// MTA's port 25, for a daemon whose sandbox cannot run sendmail.
	SMTP       string
	Period     time.Duration
	PerHour    int
	DryRunOnly bool
	Retries
	Logger *slog.Logger

	mu    sync.Mutex
	sent  map[string]time.Time // key → last notice
	hour  time.Time
	count int
}

func (m *Mail) Name() string   { return m.ActionName }
func (m *Mail) External() bool { return true }
func (m *Mail) DryRun() bool   { return m.DryRunOnly }

func (m *Mail) Run(ctx context.Context, d Detection) (err error) {
	if d.Event != "block" {
		return nil // the notice says when the block ends
	}
	if !m.admit(d) {
		return nil
	}
	// Only a notice sendmail took counts against the period and the cap:
	// one that failed is tried again.
	defer func() {
		if err != nil {
			m.unadmit(d)
		}
	}()
	var b bytes.Buffer
	fmt.Fprintf(&b, "To: %s\n", strings.Join(m.To, ", "))
	fmt.Fprintf(&b, "Subject: bombwatch: %s blocked %s %s\n", headerSafe(d.Rule), d.KeyType, headerSafe(d.Key))
	b.WriteString("Auto-Submitted: auto-generated\nContent-Type: text/plain; charset=utf-8\n\n")
	fmt.Fprintf(&b, "Rule:   %s\nKey:    %s %s\nValue:  %s over the limit of %s in %s\nSince:  %s\n",
		d.Rule, d.KeyType, strconv.Quote(d.Key), FormatNumber(d.Value), FormatNumber(d.Limit), d.Window, d.Time.UTC().Format(time.RFC3339))
	if !d.Until.IsZero() {
		fmt.Fprintf(&b, "Until:  %s\n", d.Until.UTC().Format(time.RFC3339))
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if m.SMTP != "" {
		return m.sendSMTP(ctx, b.Bytes())
	}
	// Recipients are arguments after "--", never read from the headers.
	args := append([]string{"-oi", "--"}, m.To...)
	cmd := exec.CommandContext(ctx, orDefault(m.Sendmail, "/usr/sbin/sendmail"), args...)
	cmd.Stdin = &b
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("sendmail: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// sendSMTP hands a notice to the MTA at m.SMTP: envelope sender
// MAILER-DAEMON's null sender, so that a bounce of a notice loops nowhere.
func (m *Mail) sendSMTP(ctx context.Context, msg []byte) error {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", m.SMTP)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", m.SMTP, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	host, _, _ := net.SplitHostPort(m.SMTP)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp %s: %w", m.SMTP, err)
	}
	defer c.Close()
	if err := c.Mail(""); err != nil {
		return fmt.Errorf("smtp %s: MAIL: %w", m.SMTP, err)
	}
	for _, to := range m.To {
		if !strings.Contains(to, "@") {
			to += "@localhost" // a local name, as sendmail would take it
		}
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("smtp %s: RCPT %s: %w", m.SMTP, to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp %s: DATA: %w", m.SMTP, err)
	}
	if _, err := w.Write(bytes.ReplaceAll(msg, []byte("\n"), []byte("\r\n"))); err != nil {
		return fmt.Errorf("smtp %s: %w", m.SMTP, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp %s: end of DATA: %w", m.SMTP, err)
	}
	return c.Quit()
}

// admit applies the negative cache and the hourly cap.
func (m *Mail) admit(d Detection) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := d.Now
	if now.IsZero() {
		now = d.Time
	}
	if m.sent == nil {
		m.sent = map[string]time.Time{}
	}
	k := d.KeyType + " " + d.Key
	if last, ok := m.sent[k]; ok && now.Sub(last) < m.Period {
		return false
	}
	if now.Sub(m.hour) >= time.Hour {
		m.hour, m.count = now, 0
		for key, t := range m.sent { // the cache stays as small as a period's keys
			if now.Sub(t) >= m.Period {
				delete(m.sent, key)
			}
		}
	}
	if m.PerHour > 0 && m.count >= m.PerHour {
		return false
	}
	m.count++
	m.sent[k] = now
	return true
}

// unadmit takes back what admit counted for a notice that was not sent.
func (m *Mail) unadmit(d Detection) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sent, d.KeyType+" "+d.Key)
	m.count = max(m.count-1, 0)
}

// headerSafe keeps a log's bytes from breaking a mail header.
func headerSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
