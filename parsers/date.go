package parsers

import (
	"bytes"
	"time"
)

// dateLayouts are the forms of RFC 5322 Date: headers seen in mail, most
// common first. The weekday and a trailing zone comment ("(CET)") are
// optional.
var dateLayouts = []string{
	"2 Jan 2006 15:04:05 -0700",
	"2 Jan 2006 15:04 -0700",
	"2 Jan 2006 15:04:05 MST",
	"2 Jan 06 15:04:05 -0700",
}

// parseDateHeader reads a Date: header value.
func parseDateHeader(b []byte) (time.Time, bool) {
	b = bytes.TrimSpace(b)
	if c := bytes.IndexByte(b, ','); c >= 0 && c <= 4 {
		b = bytes.TrimSpace(b[c+1:])
	}
	if i := bytes.IndexByte(b, '('); i > 0 {
		b = bytes.TrimSpace(b[:i])
	}
	if len(b) > 64 {
		return time.Time{}, false
	}
	s := string(b)
	for _, layout := range dateLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
