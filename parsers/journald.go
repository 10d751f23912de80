package parsers

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

func init() {
	Register(Format{Name: "journald", New: newJournald, Sniff: sniffJournald})
}

// journald reads `journalctl -o json` output: one JSON object per entry,
// whose MESSAGE is the MTA's message, or an array of bytes when it is not
// valid UTF-8. The entry's SYSLOG_IDENTIFIER says which MTA wrote it, and
// the MTA's own parser reads the message, so that Postfix's queue IDs are
// joined across entries as in a syslog file.
type journald struct {
	clock    *clock
	postfix  *postfix
	sendmail *sendmail
	qmail    *qmail
	entry    journalEntry
	h        header
	msg      []byte
}

type journalEntry struct {
	Realtime   string          `json:"__REALTIME_TIMESTAMP"`
	Hostname   string          `json:"_HOSTNAME"`
	Identifier string          `json:"SYSLOG_IDENTIFIER"`
	SyslogPID  string          `json:"SYSLOG_PID"`
	PID        string          `json:"_PID"`
	Message    json.RawMessage `json:"MESSAGE"`
}

func newJournald(o Options) Parser {
	return &journald{
		clock:    newClock(o),
		postfix:  newPostfix(o).(*postfix),
		sendmail: newSendmail(o).(*sendmail),
		qmail:    newQmail(o).(*qmail),
	}
}

func sniffJournald(line []byte) int {
	if len(line) > 0 && line[0] == '{' && bytes.Contains(line, []byte(`"__REALTIME_TIMESTAMP"`)) {
		return 2
	}
	return 0
}

func (j *journald) Parse(line []byte, lineNo int64, emit func(*Event)) bool {
	if len(line) == 0 || line[0] != '{' {
		return false
	}
	j.entry = journalEntry{}
	if err := json.Unmarshal(line, &j.entry); err != nil || len(j.entry.Message) == 0 {
		return false
	}
	usec, err := strconv.ParseInt(j.entry.Realtime, 10, 64)
	if err != nil || usec <= 0 {
		return false
	}
	if !j.message(j.entry.Message) {
		return false
	}
	pid := j.entry.SyslogPID
	if pid == "" {
		pid = j.entry.PID
	}
	j.h = header{
		Time:    time.UnixMicro(usec).UTC(),
		Host:    []byte(j.entry.Hostname),
		Program: []byte(j.entry.Identifier),
		PID:     []byte(pid),
		Message: j.msg,
	}
	switch {
	case isPostfixProgram(j.h.Program):
		return j.postfix.parseMessage(&j.h, lineNo, emit)
	case isSendmailProgram(j.h.Program):
		return j.sendmail.parseMessage(&j.h, lineNo, emit)
	case isQmailProgram(j.h.Program):
		return j.qmail.parseMessage(&j.h, lineNo, emit)
	}
	return false
}

// message decodes MESSAGE: a string, or an array of byte values.
func (j *journald) message(raw json.RawMessage) bool {
	j.msg = j.msg[:0]
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return false
		}
		j.msg = append(j.msg, s...)
		return true
	}
	var bs []int
	if json.Unmarshal(raw, &bs) != nil {
		return false
	}
	for _, b := range bs {
		if b < 0 || b > 255 {
			return false
		}
		j.msg = append(j.msg, byte(b))
	}
	return true
}

func isPostfixProgram(p []byte) bool {
	_, ok := postfixDaemon(p)
	return ok
}
