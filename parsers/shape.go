package parsers

import "bytes"

// Shape reduces a log line to its form, so that lines differing only in
// times, numbers, queue IDs and addresses count as one: what `parse --stats`
// shows of the lines no parser recognised. The syslog frame is dropped but
// the program name kept, since it tells which daemon to teach.
func Shape(line []byte) string {
	var h header
	msg := line
	prefix := ""
	if parseHeader(line, newClock(Options{}), &h) {
		msg = h.Message
		prefix = string(h.Program)
		if prefix != "" {
			prefix += ": "
		}
	}
	if _, rest, ok := queueID(msg); ok {
		msg = rest
		prefix += "QID: "
	}
	if len(bytes.TrimSpace(msg)) == 0 && prefix == "" {
		return "(empty line)"
	}
	out := make([]byte, 0, 80)
	out = append(out, prefix...)
	for i := 0; i < len(msg) && len(out) < 80; i++ {
		c := msg[i]
		switch {
		case isDigit(c):
			for i+1 < len(msg) && (isDigit(msg[i+1]) || msg[i+1] == '.') {
				i++
			}
			out = append(out, 'N')
		case c == '[' || c == '<':
			close := byte(']')
			if c == '<' {
				close = '>'
			}
			j := i + 1
			for j < len(msg) && msg[j] != close && j-i < 256 {
				j++
			}
			if j < len(msg) && msg[j] == close {
				if c == '[' {
					// host[address]: the host name varies as much as the address.
					k := len(out)
					for k > len(prefix) && out[k-1] != ' ' && out[k-1] != '=' && out[k-1] != ',' {
						k--
					}
					if k < len(out) {
						out = append(out[:k], '*')
					}
				}
				out = append(out, c, '*', close)
				i = j
			} else {
				out = append(out, c)
			}
		case c < 0x20 || c >= 0x7f:
			out = append(out, '?')
		default:
			out = append(out, c)
		}
	}
	return string(out)
}
