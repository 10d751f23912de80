package parsers

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// Kind is what happened: the kinds of the public interface.
type Kind uint8

const (
	KindNone Kind = iota
	Accepted
	Rejected
	AuthFailed
	LostConnection
	Connect
	// SessionEnd is no kind of the interface: a tcpserver session's end,
	// which input's merger joins with qmail-send's messages (see
	// input.Merger) and hands on as a lost connection or not at all.
	SessionEnd
)

var kindNames = [...]string{"", "accepted", "rejected", "auth_failed", "lost_connection", "connect", "session_end"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKind is the inverse of Kind.String, for the interface's kinds.
func ParseKind(s string) (Kind, bool) {
	for i, n := range kindNames {
		if i > 0 && Kind(i) != SessionEnd && n == s {
			return Kind(i), true
		}
	}
	return KindNone, false
}

// Kinds lists every event kind, in order.
func Kinds() []Kind { return []Kind{Accepted, Rejected, AuthFailed, LostConnection, Connect} }

// Event is one thing a mail server did for a sender or client. Fields the
// log does not carry are left at their zero value, except the numbers, which
// are -1 when unknown (0 is a real size, uid or recipient count).
type Event struct {
	Time       time.Time
	MTA        string
	Kind       Kind
	Host       string // the logging host
	QueueID    QID
	Sender     string // "" is the null sender <> when HasSender is set
	HasSender  bool
	ClientIP   netip.Addr
	ClientHost string
	SASLUser   string
	UID        int64
	Size       int64
	NRcpt      int64
	Reason     string
	// Duration is how long a client stayed, on lost connections whose
	// connect was seen.
	Duration time.Duration
	// Date is the message's Date: header, when the MTA logged it.
	Date time.Time
	// PID is, for qmail, the process a line is about: a tcpserver
	// session's (connect, session end) or the qmail-queue that queued a
	// message (qp); 0 when none. Not in the JSON.
	PID  int64
	File string
	Line int64
}

// QID is a queue ID, held in the event by value: a million messages cost
// no allocation for their IDs. Queue IDs are at most 20 bytes (see
// queueID); qmail's message numbers fit too.
type QID struct {
	n uint8
	b [23]byte
}

// MakeQID returns the QID of b, truncated to what a QID holds.
func MakeQID(b []byte) QID {
	var q QID
	q.n = uint8(copy(q.b[:], b))
	return q
}

func (q QID) String() string { return string(q.b[:q.n]) }
func (q QID) IsZero() bool   { return q.n == 0 }
func (q *QID) bytes() []byte { return q.b[:q.n] }

// Reset clears e for reuse, keeping no references to earlier strings' roles.
func (e *Event) Reset() {
	*e = Event{UID: -1, Size: -1, NRcpt: -1}
}

// SenderDomain is the part of the sender after its last '@', or "" for the
// null sender and local senders without a domain.
func (e *Event) SenderDomain() string {
	for i := len(e.Sender) - 1; i >= 0; i-- {
		if e.Sender[i] == '@' {
			return e.Sender[i+1:]
		}
	}
	return ""
}

// AppendJSON appends e as one JSON object, with the field names of the
// public interface. It is hand-written because it runs once per event in
// `parse --json` and encoding/json's reflection costs more than the parse.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","mta":`...)
	b = AppendJSONString(b, e.MTA)
	b = append(b, `,"kind":"`...)
	b = append(b, e.Kind.String()...)
	b = append(b, '"')
	b = appendField(b, "host", e.Host)
	if e.QueueID.n > 0 {
		b = append(b, `,"queue_id":`...)
		b = AppendJSONString(b, e.QueueID.String())
	}
	if e.HasSender {
		b = append(b, `,"sender":`...)
		b = AppendJSONString(b, e.Sender)
	}
	if e.ClientIP.IsValid() {
		b = append(b, `,"client_ip":"`...)
		b = e.ClientIP.AppendTo(b)
		b = append(b, '"')
	}
	b = appendField(b, "client_host", e.ClientHost)
	b = appendField(b, "sasl_user", e.SASLUser)
	b = appendNumber(b, "uid", e.UID)
	b = appendNumber(b, "size", e.Size)
	b = appendNumber(b, "nrcpt", e.NRcpt)
	b = appendField(b, "reason", e.Reason)
	if e.Duration > 0 {
		b = append(b, `,"duration":`...)
		b = strconv.AppendFloat(b, e.Duration.Seconds(), 'f', -1, 64)
	}
	if !e.Date.IsZero() {
		b = append(b, `,"date":"`...)
		b = e.Date.UTC().AppendFormat(b, time.RFC3339)
		b = append(b, '"')
	}
	b = appendField(b, "file", e.File)
	if e.Line > 0 {
		b = appendNumber(b, "line", e.Line)
	}
	return append(b, '}')
}

func appendField(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return AppendJSONString(b, value)
}

func appendNumber(b []byte, name string, n int64) []byte {
	if n < 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, n, 10)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string. Invalid UTF-8, which logs do
// contain, becomes U+FFFD so that the output is always valid JSON.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
