package parsers

import (
	"bytes"
	"net/netip"
	"strconv"
	"sync"
)

// The helpers below read the fields of log messages with bytes functions:
// they run on every line, where regular expressions would cost more than
// all the rest of the parse.

func indexByte(b []byte, c byte) int { return bytes.IndexByte(b, c) }

func hasPrefix(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == prefix
}

// cutPrefix returns b without prefix, and whether it was there.
func cutPrefix(b []byte, prefix string) ([]byte, bool) {
	if !hasPrefix(b, prefix) {
		return b, false
	}
	return b[len(prefix):], true
}

// leadingInt reads the decimal number at the start of b (at most 18 digits,
// so that it never overflows) and returns it with the digits read.
func leadingInt(b []byte) (int64, int) {
	var n int64
	i := 0
	for ; i < len(b) && i < 18 && isDigit(b[i]); i++ {
		n = n*10 + int64(b[i]-'0')
	}
	return n, i
}

// field returns the value of "name=value" in a message of comma- or
// space-separated fields: the bytes after "name=" up to the next comma or
// space (or the end). The name must start the message or follow a space.
func field(msg []byte, name string) ([]byte, bool) {
	for off := 0; off < len(msg); {
		i := bytes.Index(msg[off:], []byte(name))
		if i < 0 {
			return nil, false
		}
		at := off + i
		end := at + len(name)
		if (at == 0 || msg[at-1] == ' ') && end < len(msg) && msg[end] == '=' {
			v := msg[end+1:]
			if c := bytes.IndexAny(v, ", "); c >= 0 {
				v = v[:c]
			}
			return v, true
		}
		off = end
	}
	return nil, false
}

// intField reads a numeric field; absent or malformed gives -1.
func intField(msg []byte, name string) int64 {
	v, ok := field(msg, name)
	if !ok {
		return -1
	}
	n, d := leadingInt(v)
	if d == 0 {
		return -1
	}
	return n
}

// queueID splits "QID: rest". A queue ID is 5 to 20 letters and digits with
// at least one digit or capital letter, which tells it from words such as
// "warning:" and "statistics:"; NOQUEUE is not one.
func queueID(msg []byte) (qid, rest []byte, ok bool) {
	i := 0
	special := false
	for ; i < len(msg) && i <= 20; i++ {
		c := msg[i]
		if isDigit(c) || ('A' <= c && c <= 'Z') {
			special = true
		} else if !('a' <= c && c <= 'z') {
			break
		}
	}
	if i < 5 || i > 20 || !special || i+1 >= len(msg) || msg[i] != ':' || msg[i+1] != ' ' {
		return nil, msg, false
	}
	if string(msg[:i]) == "NOQUEUE" {
		return nil, msg, false
	}
	return msg[:i], msg[i+2:], true
}

// parseIP reads an address as MTAs write it in brackets: "192.0.2.1",
// "2001:db8::1", "IPv6:2001:db8::1". Anything else gives the zero Addr.
func parseIP(b []byte) netip.Addr {
	if a, ok := parseIPv4(b); ok {
		return a
	}
	b, _ = cutPrefix(b, "IPv6:")
	if len(b) == 0 || len(b) > 64 || indexByte(b, ':') < 0 {
		return netip.Addr{}
	}
	// IPv6 goes through netip, which wants a string: a small table of the
	// addresses seen keeps the conversion off the common path.
	if a, ok := ipv6Cache.get(b); ok {
		return a
	}
	a, err := netip.ParseAddr(string(b))
	if err != nil {
		return netip.Addr{}
	}
	// A zone ("fe80::1%eth0") names an interface of the logging host: it
	// says nothing of the client, and its bytes are the client's to choose.
	a = a.Unmap().WithZone("")
	ipv6Cache.put(string(b), a)
	return a
}

// ipv6Cache is per process, not per parser, and guarded: parsers of several
// inputs run in their own goroutines in the daemon.
var ipv6Cache = &addrTable{m: map[string]netip.Addr{}}

type addrTable struct {
	mu sync.Mutex
	m  map[string]netip.Addr
}

func (t *addrTable) get(b []byte) (netip.Addr, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.m[string(b)]
	return a, ok
}

func (t *addrTable) put(s string, a netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= strtabMax {
		t.m = map[string]netip.Addr{}
	}
	t.m[s] = a
}

// parseIPv4 reads a dotted quad without the allocation of converting the
// bytes to a string for netip. Like netip, it refuses leading zeros.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	part, digits := 0, 0
	val := 0
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == '.' {
			if digits == 0 || part > 3 {
				return netip.Addr{}, false
			}
			ip[part] = byte(val)
			part++
			val, digits = 0, 0
			continue
		}
		c := b[i]
		if !isDigit(c) || (digits == 1 && val == 0) {
			return netip.Addr{}, false
		}
		val = val*10 + int(c-'0')
		digits++
		if val > 255 {
			return netip.Addr{}, false
		}
	}
	if part != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

// hostAndIP reads Postfix's "host[ip]" (an optional ":port" may follow).
// The host "unknown" means the address had no name, and is dropped.
func hostAndIP(b []byte) (host []byte, ip netip.Addr) {
	open := bytes.LastIndexByte(b, '[')
	if open < 0 {
		return nil, netip.Addr{}
	}
	end := indexByte(b[open:], ']')
	if end < 0 {
		return nil, netip.Addr{}
	}
	host = b[:open]
	if string(host) == "unknown" {
		host = nil
	}
	return host, parseIP(b[open+1 : open+end])
}

// sender is normalizeSender through the table.
func (t *strtab) sender(b []byte) string {
	if len(b) >= 2 && b[0] == '<' && b[len(b)-1] == '>' {
		b = b[1 : len(b)-1]
	}
	if at := bytes.LastIndexByte(b, '@'); at >= 0 && bytes.IndexFunc(b[at+1:], isUpper) >= 0 {
		return normalizeSender(b) // rare: not worth a table entry
	}
	return t.get(b)
}

func isUpper(r rune) bool { return 'A' <= r && r <= 'Z' }

// normalizeSender lower-cases the domain of an address (its local part is
// case-sensitive by the RFCs and kept) and strips the angle brackets.
func normalizeSender(b []byte) string {
	if len(b) >= 2 && b[0] == '<' && b[len(b)-1] == '>' {
		b = b[1 : len(b)-1]
	}
	at := bytes.LastIndexByte(b, '@')
	if at < 0 {
		return string(b)
	}
	lower := true
	for _, c := range b[at+1:] {
		if 'A' <= c && c <= 'Z' {
			lower = false
			break
		}
	}
	if lower {
		return string(b)
	}
	s := []byte(string(b))
	for i := at + 1; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			s[i] = c + 'a' - 'A'
		}
	}
	return string(s)
}

// interner returns the same string for the same bytes on consecutive calls,
// so that the logging host, which rarely changes, costs no allocation.
type interner struct{ last string }

func (in *interner) get(b []byte) string {
	if string(b) != in.last {
		in.last = string(b)
	}
	return in.last
}

func lastIndex(b []byte, s string) int { return bytes.LastIndex(b, []byte(s)) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// reason joins the parts of a reason — the first two with a space, the
// rest with ": " — bounded in length, through the table: rejections and
// failures repeat their text.
func (t *strtab) reason(parts ...[]byte) string {
	var buf [maxReason]byte
	b := buf[:0]
	for i, p := range parts {
		if len(p) == 0 {
			continue
		}
		if i > 0 && len(b) > 0 {
			if i == 1 {
				b = append(b, ' ')
			} else {
				b = append(b, ':', ' ')
			}
		}
		b = append(b, p[:min(len(p), maxReason-len(b))]...)
		if len(b) >= maxReason-2 {
			break
		}
	}
	return t.get(b)
}

// strtab returns one string for equal bytes, from a table of bounded size:
// client names and senders repeat from line to line, and a lookup costs no
// allocation where a conversion costs one. The table is emptied when full.
// One that filled with few hits — a flood of distinct strings, a forged
// sender a message — is left alone for the next strtabBypass strings,
// which are converted: the lookups and inserts would be all loss.
type strtab struct {
	m      map[string]string
	hits   int // since the table was last emptied
	bypass int // strings left to convert without the table
}

const (
	strtabMax    = 8192
	strtabBypass = 8 * strtabMax
)

func (t *strtab) get(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if t.bypass > 0 {
		t.bypass--
		return string(b)
	}
	if s, ok := t.m[string(b)]; ok {
		t.hits++
		return s
	}
	switch {
	case t.m == nil:
		t.m = make(map[string]string, 256)
	case len(t.m) >= strtabMax:
		clear(t.m) // its room kept: it fills again
		if t.hits < strtabMax/4 {
			t.bypass = strtabBypass
		}
		t.hits = 0
	}
	s := string(b)
	if t.bypass == 0 {
		t.m[s] = s
	}
	return s
}
