package parsers

import (
	"time"
)

// header is the frame around a log message: a syslog line's stamp, host and
// program, or a multilog line's TAI64N stamp alone. Its byte slices point
// into the line and are valid until the next line.
type header struct {
	Time    time.Time
	Host    []byte
	Program []byte // "postfix/smtpd"; empty for multilog lines
	PID     []byte
	Message []byte
}

// clock turns stamps into times. It caches the start of the current hour of
// classic stamps so that a line costs no time.Date call, and keeps the
// reference time that classic stamps take their year from.
type clock struct {
	loc     *time.Location
	ref     time.Time
	now     func() time.Time
	hourKey int // month<<16 | day<<8 | hour of the cached hour; 0: none
	hour    time.Time
}

func newClock(o Options) *clock {
	loc := o.Location
	if loc == nil {
		loc = time.UTC
	}
	ref := o.Reference
	if ref.IsZero() {
		// A fixed reference keeps a caller that forgot one deterministic.
		ref = time.Date(2000, 1, 1, 0, 0, 0, 0, loc)
	}
	return &clock{loc: loc, ref: ref, now: o.Now}
}

// classic returns the time of a yearless stamp: the latest year that puts it
// no later than a day after the reference, which handles a log that spans
// New Year and a clock slightly ahead of the reference.
func (c *clock) classic(month time.Month, day, hour, min, sec, nsec int) time.Time {
	key := int(month)<<16 | day<<8 | hour
	if key != c.hourKey {
		if c.now != nil {
			c.ref = c.now()
		}
		limit := c.ref.Add(24 * time.Hour)
		y := c.ref.In(c.loc).Year() + 1
		t := time.Date(y, month, day, hour, 0, 0, 0, c.loc)
		for i := 0; i < 2 && t.After(limit); i++ {
			y--
			t = time.Date(y, month, day, hour, 0, 0, 0, c.loc)
		}
		c.hourKey, c.hour = key, t
	}
	return c.hour.Add(time.Duration(min)*time.Minute + time.Duration(sec)*time.Second + time.Duration(nsec))
}

// parseHeader splits a line into its frame and message. It recognises
// classic syslog ("Mar  7 02:09:33 host prog[pid]: msg", day padded or
// not), rsyslog's RFC 3339 stamps ("2023-03-15T00:00:06.046710+01:00 host
// prog[pid]: msg") and multilog's TAI64N ("@4000000038c3eeb027f41c7c msg").
func parseHeader(line []byte, c *clock, h *header) bool {
	if len(line) == 0 {
		return false
	}
	var rest []byte
	if line[0] == '<' {
		// A priority: "<22>" before a classic or RFC 3339 stamp, or
		// "<165>1 " before an RFC 5424 header.
		end := indexByte(line, '>')
		if end < 2 || end > 4 || end+1 >= len(line) {
			return false
		}
		line = line[end+1:]
		if len(line) > 2 && line[0] == '1' && line[1] == ' ' {
			return parseRFC5424(line[2:], h)
		}
	}
	switch {
	case line[0] == '@':
		t, ok := parseTAI64N(line)
		if !ok || len(line) < 26 || line[25] != ' ' {
			return false
		}
		h.Time, h.Host, h.Program, h.PID, h.Message = t, nil, nil, nil, line[26:]
		return true
	case isDigit(line[0]):
		t, n, ok := parseRFC3339(line)
		if !ok {
			return false
		}
		h.Time, rest = t, line[n:]
	default:
		t, n, ok := parseClassic(line, c)
		if !ok {
			return false
		}
		h.Time, rest = t, line[n:]
	}
	if len(rest) == 0 || rest[0] != ' ' {
		return false
	}
	rest = rest[1:]
	// Some setups log the facility and priority: "<mail.info> host ...".
	if len(rest) > 0 && rest[0] == '<' {
		if i := indexByte(rest, '>'); i > 0 && i+1 < len(rest) && rest[i+1] == ' ' {
			rest = rest[i+2:]
		}
	}
	sp := indexByte(rest, ' ')
	if sp <= 0 {
		return false
	}
	h.Host, rest = rest[:sp], rest[sp+1:]
	return splitProgram(rest, h)
}

// parseRFC5424 reads what follows "<PRI>1 ": "TIMESTAMP HOST APP PROCID
// MSGID SD MSG", where "-" is an empty field and SD is "-" or one or more
// "[...]" elements.
func parseRFC5424(b []byte, h *header) bool {
	t, n, ok := parseRFC3339(b)
	if !ok || n >= len(b) || b[n] != ' ' {
		return false
	}
	b = b[n+1:]
	var fields [4][]byte // host, app, procid, msgid
	for i := range fields {
		sp := indexByte(b, ' ')
		if sp <= 0 {
			return false
		}
		if f := b[:sp]; string(f) != "-" {
			fields[i] = f
		}
		b = b[sp+1:]
	}
	// Structured data: skip it, minding escaped "\]" inside values.
	switch {
	case len(b) > 0 && b[0] == '-':
		b = b[1:]
	case len(b) > 0 && b[0] == '[':
		for len(b) > 0 && b[0] == '[' {
			i := 1
			for ; i < len(b) && b[i] != ']'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if i >= len(b) {
				return false
			}
			b = b[i+1:]
		}
	default:
		return false
	}
	b = trimMessage(b)
	b, _ = cutPrefix(b, "\xef\xbb\xbf") // a UTF-8 byte order mark
	h.Time, h.Host, h.Program, h.PID, h.Message = t, fields[0], fields[1], fields[2], b
	return len(h.Program) > 0
}

// splitProgram reads "prog[pid]: msg" or "prog: msg".
func splitProgram(rest []byte, h *header) bool {
	h.PID = nil
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case '[':
			end := indexByte(rest[i:], ']')
			if end < 0 || i+end+1 >= len(rest) || rest[i+end+1] != ':' {
				return false
			}
			h.Program, h.PID = rest[:i], rest[i+1:i+end]
			h.Message = trimMessage(rest[i+end+2:])
			return i > 0
		case ':':
			h.Program = rest[:i]
			h.Message = trimMessage(rest[i+1:])
			return i > 0
		case ' ':
			return false
		}
	}
	return false
}

func trimMessage(m []byte) []byte {
	if len(m) > 0 && m[0] == ' ' {
		return m[1:]
	}
	return m
}

var monthNames = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// parseClassic reads "Mmm dd hh:mm:ss" with the day padded by a space or a
// zero, or not padded, and an optional fraction of a second. It returns the
// time and the number of bytes read.
func parseClassic(b []byte, c *clock) (time.Time, int, bool) {
	if len(b) < 14 {
		return time.Time{}, 0, false
	}
	month := time.Month(0)
	for i, m := range monthNames {
		if b[0] == m[0] && b[1] == m[1] && b[2] == m[2] {
			month = time.Month(i + 1)
			break
		}
	}
	if month == 0 || b[3] != ' ' {
		return time.Time{}, 0, false
	}
	i := 4
	if b[i] == ' ' {
		i++
	}
	day := 0
	for n := 0; n < 2 && i < len(b) && isDigit(b[i]); n++ {
		day = day*10 + int(b[i]-'0')
		i++
	}
	if day < 1 || day > 31 || i+9 > len(b) || b[i] != ' ' {
		return time.Time{}, 0, false
	}
	i++
	hour, min, sec, ok := parseClock(b[i:])
	if !ok {
		return time.Time{}, 0, false
	}
	i += 8
	nsec, n := parseFraction(b[i:])
	i += n
	return c.classic(month, day, hour, min, sec, nsec), i, true
}

// parseClock reads "hh:mm:ss".
func parseClock(b []byte) (hour, min, sec int, ok bool) {
	if len(b) < 8 || b[2] != ':' || b[5] != ':' {
		return 0, 0, 0, false
	}
	hour, ok1 := twoDigits(b[0:])
	min, ok2 := twoDigits(b[3:])
	sec, ok3 := twoDigits(b[6:])
	// 60 is a leap second.
	return hour, min, sec, ok1 && ok2 && ok3 && hour < 24 && min < 60 && sec <= 60
}

// parseFraction reads ".ddd" (up to nine digits count) and returns
// nanoseconds and the bytes read.
func parseFraction(b []byte) (int, int) {
	if len(b) < 2 || b[0] != '.' || !isDigit(b[1]) {
		return 0, 0
	}
	nsec, scale, i := 0, 100000000, 1
	for ; i < len(b) && isDigit(b[i]); i++ {
		nsec += int(b[i]-'0') * scale
		scale /= 10
	}
	return nsec, i
}

// parseRFC3339 reads "2023-03-15T00:00:06.046710+01:00" (or "Z").
func parseRFC3339(b []byte) (time.Time, int, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != ' ') {
		return time.Time{}, 0, false
	}
	year := 0
	for _, d := range b[0:4] {
		if !isDigit(d) {
			return time.Time{}, 0, false
		}
		year = year*10 + int(d-'0')
	}
	month, ok1 := twoDigits(b[5:])
	day, ok2 := twoDigits(b[8:])
	// No mail server logged before 1970: such a stamp is garbage, and would
	// make the zero time that means "no time" elsewhere.
	if !ok1 || !ok2 || month < 1 || month > 12 || day < 1 || day > 31 || year < 1970 {
		return time.Time{}, 0, false
	}
	hour, min, sec, ok := parseClock(b[11:])
	if !ok {
		return time.Time{}, 0, false
	}
	i := 19
	nsec, n := parseFraction(b[i:])
	i += n
	if i >= len(b) {
		return time.Time{}, 0, false
	}
	offset := 0
	switch b[i] {
	case 'Z':
		i++
	case '+', '-':
		if i+6 > len(b) || b[i+3] != ':' {
			return time.Time{}, 0, false
		}
		oh, ok1 := twoDigits(b[i+1:])
		om, ok2 := twoDigits(b[i+4:])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return time.Time{}, 0, false
		}
		offset = oh*3600 + om*60
		if b[i] == '-' {
			offset = -offset
		}
		i += 6
	default:
		return time.Time{}, 0, false
	}
	t := time.Date(year, time.Month(month), day, hour, min, sec, nsec, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second), i, true
}

// tai64Epoch is the TAI64 label of 1970-01-01 00:00:00 as daemontools writes
// it: 2^62 plus the 10 seconds TAI was ahead of UTC in 1972. daemontools
// applies no leap-second table, so neither do we.
const tai64Epoch = 1<<62 + 10

// parseTAI64N reads "@" and 24 hex digits: 16 of seconds, 8 of nanoseconds.
func parseTAI64N(b []byte) (time.Time, bool) {
	if len(b) < 25 || b[0] != '@' {
		return time.Time{}, false
	}
	var secs, nsec uint64
	for i := 1; i < 25; i++ {
		v, ok := hexValue(b[i])
		if !ok {
			return time.Time{}, false
		}
		if i <= 16 {
			secs = secs<<4 | uint64(v)
		} else {
			nsec = nsec<<4 | uint64(v)
		}
	}
	if secs < tai64Epoch || secs-tai64Epoch > 1<<40 || nsec >= 1e9 {
		return time.Time{}, false
	}
	return time.Unix(int64(secs-tai64Epoch), int64(nsec)).UTC(), true
}

// parseUnixStamp reads the decimal stamp splogger puts before qmail's
// messages: "1157520813.485077". It returns the bytes read.
func parseUnixStamp(b []byte) (time.Time, int, bool) {
	secs, i := int64(0), 0
	for ; i < len(b) && i < 12 && isDigit(b[i]); i++ {
		secs = secs*10 + int64(b[i]-'0')
	}
	if i < 9 {
		return time.Time{}, 0, false
	}
	nsec, n := parseFraction(b[i:])
	return time.Unix(secs, int64(nsec)).UTC(), i + n, true
}

func twoDigits(b []byte) (int, bool) {
	if len(b) < 2 || !isDigit(b[0]) || !isDigit(b[1]) {
		return 0, false
	}
	return int(b[0]-'0')*10 + int(b[1]-'0'), true
}

func hexValue(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
