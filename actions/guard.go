package actions

import (
	"fmt"
	"net/netip"
	"strings"
)

// Guard is checked by every action that enforces, whatever the pipeline
// decided: loopback, unspecified addresses and the config's ignore list are
// never blocked. It is the last line of defence against a rule, a manual
// `bans ban` or a bug that would lock out the postmaster.
type Guard struct {
	nets    []netip.Prefix
	senders map[string]bool
	domains map[string]bool
}

// NewGuard makes a Guard from ignore entries (see config.CheckIgnore).
func NewGuard(ignore []string) *Guard {
	g := &Guard{senders: map[string]bool{}, domains: map[string]bool{}}
	for _, s := range ignore {
		switch {
		case s == "<>" || strings.HasPrefix(s, "uid:"):
		case strings.HasPrefix(s, "@"):
			g.domains[strings.ToLower(s[1:])] = true
		case strings.Contains(s, "@"):
			at := strings.LastIndexByte(s, '@')
			g.senders[s[:at+1]+strings.ToLower(s[at+1:])] = true
		case strings.Contains(s, "/"):
			if p, err := netip.ParsePrefix(s); err == nil {
				g.nets = append(g.nets, p.Masked())
			}
		default:
			if a, err := netip.ParseAddr(s); err == nil {
				g.nets = append(g.nets, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			}
		}
	}
	return g
}

// Network parses a client key as an address or network, and refuses what
// must never be blocked: loopback, unspecified, the ignore list, and a
// network that holds any of those.
func (g *Guard) Network(key string) (netip.Prefix, error) {
	var p netip.Prefix
	if a, err := netip.ParseAddr(key); err == nil {
		if a.Zone() != "" {
			return p, fmt.Errorf("%q: an address with a zone", key)
		}
		a = a.Unmap()
		p = netip.PrefixFrom(a, a.BitLen())
	} else if p, err = netip.ParsePrefix(key); err != nil {
		return p, fmt.Errorf("%q is not an address or network", key)
	}
	p = p.Masked()
	for _, never := range []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("0.0.0.0/32"), netip.MustParsePrefix("::/128")} {
		if p.Overlaps(never) {
			return p, fmt.Errorf("%s holds loopback or the unspecified address: never blocked", p)
		}
	}
	for _, n := range g.nets {
		if p.Overlaps(n) {
			return p, fmt.Errorf("%s is on the ignore list (%s): never blocked", p, n)
		}
	}
	return p, nil
}

// Sender refuses a sender or sender domain on the ignore list, and one that
// no map can hold safely: empty, over 254 bytes, or holding white space,
// quotes, control characters, shell or map syntax. Such a sender is logged
// and not blocked rather than quoted: every map format quotes differently,
// and none of them needs such an address to stop a bomb.
func (g *Guard) Sender(keyType, key string) error {
	if key == "" || key == "<>" {
		return fmt.Errorf("the null sender cannot be put in a map")
	}
	if len(key) > 254 {
		return fmt.Errorf("a sender of %d bytes: over 254", len(key))
	}
	for _, c := range []byte(key) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"'`\\$;|&<>(){}[]*?#,:=!~^", c) >= 0 {
			return fmt.Errorf("sender %q holds %q: refused", key, c)
		}
	}
	if keyType == "sender_domain" {
		if g.domains[strings.ToLower(key)] {
			return fmt.Errorf("@%s is on the ignore list: never blocked", key)
		}
		return nil
	}
	at := strings.LastIndexByte(key, '@')
	if at < 0 {
		return fmt.Errorf("sender %q has no domain", key)
	}
	if g.senders[key] || g.domains[strings.ToLower(key[at+1:])] {
		return fmt.Errorf("%s is on the ignore list: never blocked", key)
	}
	return nil
}
