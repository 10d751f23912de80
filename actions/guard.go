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
			g.senders[FoldAddress(strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">"))] = true
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
			return p, refuse("%q: an address with a zone", key)
		}
		a = a.Unmap()
		p = netip.PrefixFrom(a, a.BitLen())
	} else if p, err = netip.ParsePrefix(key); err != nil {
		return p, refuse("%q is not an address or network", key)
	}
	p = p.Masked()
	for _, never := range []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("0.0.0.0/32"), netip.MustParsePrefix("::/128")} {
		if p.Overlaps(never) {
			return p, refuse("%s holds loopback or the unspecified address: never blocked", p)
		}
	}
	for _, n := range g.nets {
		if p.Overlaps(n) {
			return p, refuse("%s is on the ignore list (%s): never blocked", p, n)
		}
	}
	return p, nil
}

// Refusal is the Guard's no: the key is never to be enforced, and trying
// again cannot change that, so the Executor does not retry it.
type Refusal struct{ Reason string }

func (r *Refusal) Error() string { return "refused: " + r.Reason }

func refuse(format string, args ...any) error {
	return &Refusal{Reason: fmt.Sprintf(format, args...)}
}

// FoldAddress folds an address or domain the way the MTAs' maps compare
// keys: postmap, makemap and qmail's badmailfrom all ignore the case of
// ASCII letters, local part included. It allocates only when s has a
// capital.
func FoldAddress(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// Sender refuses a sender or sender domain on the ignore list, and one that
// no map can hold safely: empty, over 254 bytes, or holding white space,
// quotes, control characters, shell or map syntax, and one shaped like a
// map's wildcard ("user@", "@domain", "x@.domain", ".domain"), which
// would block far more than the key. Such a sender is logged and not
// blocked rather than quoted: every map format quotes differently, and
// none of them needs such an address to stop a bomb.
//
// Keys are compared as the maps compare them, case-folded: a block of
// Abuse@Example.NET would reject abuse@example.net. A domain is refused
// when an ignored sender or domain is in it or under it, since the maps
// match a domain's subdomains too.
func (g *Guard) Sender(keyType, key string) error {
	if key == "" || key == "<>" {
		return refuse("the null sender cannot be put in a map")
	}
	if len(key) > 254 {
		return refuse("a sender of %d bytes: over 254", len(key))
	}
	for _, c := range []byte(key) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"'`\\$;|&<>(){}[]*?#,:=!~^%", c) >= 0 {
			return refuse("sender %q holds %q", key, c)
		}
	}
	folded := FoldAddress(key)
	domain := folded
	if keyType != "sender_domain" {
		at := strings.IndexByte(folded, '@')
		if at <= 0 || strings.IndexByte(folded[at+1:], '@') >= 0 {
			return refuse("sender %q is not one local part and one domain: a map would read it as a wildcard", key)
		}
		domain = folded[at+1:]
		if g.senders[folded] {
			return refuse("%s is on the ignore list: never blocked", key)
		}
	} else if strings.IndexByte(domain, '@') >= 0 {
		return refuse("sender domain %q holds '@'", key)
	}
	if domain == "" || domain[0] == '.' || domain[len(domain)-1] == '.' || strings.Contains(domain, "..") {
		return refuse("%q: a domain that is empty or starts or ends with a dot would be a wildcard in a map", key)
	}
	for d := range g.domains {
		// A sender in an ignored domain; a domain holding an ignored one,
		// or inside it.
		if inDomain(domain, d) || keyType == "sender_domain" && inDomain(d, domain) {
			return refuse("@%s is on the ignore list: never blocked", d)
		}
	}
	if keyType == "sender_domain" {
		for s := range g.senders {
			if inDomain(s[strings.LastIndexByte(s, '@')+1:], domain) {
				return refuse("the ignored sender %s is in %s: the domain is never blocked", s, key)
			}
		}
	}
	return nil
}

// inDomain reports whether domain d is parent or under it.
func inDomain(d, parent string) bool {
	return d == parent || strings.HasSuffix(d, parent) && d[len(d)-len(parent)-1] == '.'
}

// User checks a SASL login name for a check_sasl_access map.
func (g *Guard) User(key string) error {
	if key == "" || len(key) > 255 {
		return refuse("a SASL user name of %d bytes", len(key))
	}
	for _, c := range []byte(key) {
		// What Postfix's table lookups and the map file's syntax read as
		// something else: space ends the key, # starts a comment, and
		// the rest have no place in a login name.
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"'`\\$;|&<>(){}[]*?#,:=!~^%/", c) >= 0 {
			return refuse("SASL user %q holds %q", key, c)
		}
	}
	return nil
}
