package pipeline

import (
	"bytes"
	"strings"
)

// senderOptions rewrite a sender before it becomes a key, so that the
// addresses one sender hides behind count as one.
type senderOptions struct {
	tag  bool // "user+tag@d" → "user@d"
	batv bool // "prvs=1234abcdef=user@d" → "user@d"
	srs  bool // "SRS0=HHH=TT=orig.example=user@fwd" → "user@orig.example"
}

// appendSender appends the rewritten sender to buf.
func (o senderOptions) appendSender(buf []byte, sender string) []byte {
	if !o.tag && !o.batv && !o.srs {
		return append(buf, sender...)
	}
	at := strings.LastIndexByte(sender, '@')
	if at < 0 {
		return append(buf, sender...)
	}
	local, domain := sender[:at], sender[at+1:]
	if o.srs {
		if l, d, ok := decodeSRS(local); ok {
			local, domain = l, d
		}
	}
	if o.batv {
		local = stripBATV(local)
	}
	if o.tag {
		if i := strings.IndexByte(local, '+'); i > 0 {
			local = local[:i]
		}
	}
	buf = append(buf, local...)
	buf = append(buf, '@')
	return append(buf, bytes.ToLower([]byte(domain))...)
}

// decodeSRS reads the original address out of an SRS local part:
// "SRS0=HHH=TT=domain=local" or "SRS1=HHH=forwarder==HHH=TT=domain=local"
// (the separator after SRS0 may also be '+' or '-').
func decodeSRS(local string) (string, string, bool) {
	if len(local) < 5 {
		return "", "", false
	}
	switch strings.ToUpper(local[:4]) {
	case "SRS1":
		i := strings.Index(local, "==")
		if i < 0 {
			return "", "", false
		}
		local = "SRS0=" + local[i+2:]
	case "SRS0":
	default:
		return "", "", false
	}
	if c := local[4]; c != '=' && c != '+' && c != '-' {
		return "", "", false
	}
	// HHH, TT, domain, and the local part, which may itself hold '='.
	parts := strings.SplitN(local[5:], "=", 4)
	if len(parts) != 4 || parts[2] == "" || parts[3] == "" {
		return "", "", false
	}
	return parts[3], parts[2], true
}

// stripBATV removes a BATV tag: "prvs=TAG=local", "msprvs1=TAG=local".
func stripBATV(local string) string {
	lower := strings.ToLower(local)
	for _, p := range []string{"prvs=", "msprvs1="} {
		if strings.HasPrefix(lower, p) {
			if i := strings.IndexByte(local[len(p):], '='); i >= 0 && len(p)+i+1 < len(local) {
				return local[len(p)+i+1:]
			}
		}
	}
	return local
}
