package parsers

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
)

// Events are encoded compactly for the hosts that share a store: each host
// publishes the events it read, and every host runs them all (see
// input.Merger). The encoding is a version byte, then per field a varint
// or a length-prefixed string; an unknown version is refused, never
// guessed at.

const binaryVersion = 1

// AppendBinary appends e's encoding. PID is not encoded: it serves only
// qmail's join, done before an event is published.
func (e *Event) AppendBinary(b []byte) []byte {
	b = append(b, binaryVersion, byte(e.Kind))
	b = binary.AppendVarint(b, e.Time.UnixNano())
	b = appendString(b, e.MTA)
	b = appendString(b, e.Host)
	b = appendBytes(b, e.QueueID.bytes())
	if e.HasSender {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = appendString(b, e.Sender)
	var ip []byte
	if e.ClientIP.IsValid() {
		ip, _ = e.ClientIP.MarshalBinary()
	}
	b = appendBytes(b, ip)
	b = appendString(b, e.ClientHost)
	b = appendString(b, e.SASLUser)
	b = binary.AppendVarint(b, e.UID)
	b = binary.AppendVarint(b, e.Size)
	b = binary.AppendVarint(b, e.NRcpt)
	b = appendString(b, e.Reason)
	b = binary.AppendVarint(b, int64(e.Duration))
	var date int64
	if !e.Date.IsZero() {
		date = e.Date.UnixNano()
	}
	b = binary.AppendVarint(b, date)
	b = appendString(b, e.File)
	return binary.AppendVarint(b, e.Line)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errBinary = errors.New("event: truncated or corrupt encoding")

// Decoder decodes events encoded by AppendBinary. It keeps the strings
// that repeat from one event to the next (MTA, host, file) so that they
// cost one allocation, not one an event.
type Decoder struct {
	mta, host, file string
}

// Decode decodes the event at the start of data into e, and returns the
// rest of data.
func (d *Decoder) Decode(data []byte, e *Event) ([]byte, error) {
	r := reader{b: data}
	e.Reset()
	if v := r.byte(); v != binaryVersion {
		if r.err == nil {
			r.err = errors.New("event: unknown encoding version")
		}
		return nil, r.err
	}
	e.Kind = Kind(r.byte())
	e.Time = time.Unix(0, r.varint()).UTC()
	e.MTA = r.cached(&d.mta)
	e.Host = r.cached(&d.host)
	e.QueueID = MakeQID(r.bytes())
	e.HasSender = r.byte() == 1
	e.Sender = r.string()
	if ip := r.bytes(); len(ip) > 0 {
		if err := e.ClientIP.UnmarshalBinary(ip); err != nil && r.err == nil {
			r.err = errBinary
		}
	} else {
		e.ClientIP = netip.Addr{}
	}
	e.ClientHost = r.string()
	e.SASLUser = r.string()
	e.UID, e.Size, e.NRcpt = r.varint(), r.varint(), r.varint()
	e.Reason = r.string()
	e.Duration = time.Duration(r.varint())
	if date := r.varint(); date != 0 {
		e.Date = time.Unix(0, date).UTC()
	}
	e.File = r.cached(&d.file)
	e.Line = r.varint()
	if r.err != nil {
		return nil, r.err
	}
	return r.b, nil
}

// DecodeEach calls fn with each event of a run encoded one after the
// other (a shared state's run of a host's events), valid during the call.
func (d *Decoder) DecodeEach(data []byte, fn func(*Event)) error {
	var e Event
	for len(data) > 0 {
		var err error
		if data, err = d.Decode(data, &e); err != nil {
			return err
		}
		fn(&e)
	}
	return nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = errBinary
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errBinary
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	if r.err != nil {
		return nil
	}
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(len(r.b)-k) {
		r.err = errBinary
		return nil
	}
	s := r.b[k : k+int(n)]
	r.b = r.b[k+int(n):]
	return s
}

func (r *reader) string() string { return string(r.bytes()) }

// cached is the next string, the one of *last again when it is the same.
func (r *reader) cached(last *string) string {
	b := r.bytes()
	if string(b) != *last { // no allocation: the compiler compares in place
		*last = string(b)
	}
	return *last
}
