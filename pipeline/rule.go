package pipeline

import (
	"container/heap"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/bombwatch/bombwatch/actions"
	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/state"
	"github.com/bombwatch/bombwatch/window"
)

// rule is a config rule made ready to run: it turns events into keys and
// counts them in its window.
type rule struct {
	name    string
	keyType string
	kinds   [8]bool // by parsers.Kind
	bits4   int     // client_net prefix lengths
	bits6   int
	limit   int
	per     time.Duration
	block   time.Duration
	actions []actions.Action
	counter *window.Counter
	blocked map[string]*state.Block // keys in force, by key
	swept   time.Time               // when expired keys were last dropped
}

// appendKey appends the event's key for the rule to buf. It reports false
// when the event has no such key, or when the key is one that is never
// blocked: loopback and unspecified addresses.
func (r *rule) appendKey(buf []byte, e *parsers.Event) ([]byte, bool) {
	switch r.keyType {
	case "sender":
		if !e.HasSender {
			return buf, false
		}
		if e.Sender == "" {
			return append(buf, "<>"...), true // the null sender is its own key
		}
		return append(buf, e.Sender...), true
	case "sender_domain":
		d := e.SenderDomain()
		return append(buf, d...), d != ""
	case "client_ip", "client_net":
		ip := e.ClientIP
		if !ip.IsValid() || ip.IsLoopback() || ip.IsUnspecified() {
			return buf, false
		}
		if r.keyType == "client_ip" {
			return ip.AppendTo(buf), true
		}
		bits := r.bits4
		if ip.Is6() {
			bits = r.bits6
		}
		net, err := ip.WithZone("").Prefix(bits)
		if err != nil {
			return buf, false
		}
		return net.AppendTo(buf), true
	case "sasl_user":
		return append(buf, e.SASLUser...), e.SASLUser != ""
	case "uid":
		return strconv.AppendInt(buf, e.UID, 10), e.UID >= 0
	}
	return buf, false
}

// ignoreList is the config's ignore entries: events from these clients or
// senders count for no rule.
type ignoreList struct {
	nets    []netip.Prefix
	senders map[string]bool
	domains map[string]bool
}

func newIgnoreList(entries []string) (*ignoreList, error) {
	l := &ignoreList{senders: map[string]bool{}, domains: map[string]bool{}}
	for _, s := range entries {
		if err := config.CheckIgnore(s); err != nil {
			return nil, err
		}
		switch {
		case strings.HasPrefix(s, "@"):
			l.domains[strings.ToLower(s[1:])] = true
		case strings.Contains(s, "@"):
			l.senders[normalizeAddress(s)] = true
		case strings.Contains(s, "/"):
			l.nets = append(l.nets, netip.MustParsePrefix(s).Masked())
		default:
			a := netip.MustParseAddr(s).Unmap()
			l.nets = append(l.nets, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return l, nil
}

// normalizeAddress lower-cases the domain, as the parsers do.
func normalizeAddress(s string) string {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		return s[:at+1] + strings.ToLower(s[at+1:])
	}
	return s
}

func (l *ignoreList) event(e *parsers.Event) bool {
	if e.ClientIP.IsValid() {
		for _, n := range l.nets {
			if n.Contains(e.ClientIP) {
				return true
			}
		}
	}
	if e.HasSender && e.Sender != "" {
		if len(l.senders) > 0 && l.senders[e.Sender] {
			return true
		}
		if len(l.domains) > 0 && l.domains[e.SenderDomain()] {
			return true
		}
	}
	return false
}

// New makes a pipeline for cfg, restoring the state in opts.Store.
func New(cfg *config.Config, opts Options) (*Pipeline, error) {
	if opts.CommitEvery <= 0 {
		opts.CommitEvery = 16384
	}
	p := &Pipeline{opts: opts, byName: map[string]*rule{}, unsaved: map[int64]*state.Block{}, nextID: 1, log: opts.Logger}
	if p.log == nil {
		p.log = slog.Default()
	}
	if opts.Executor != nil {
		opts.Executor.Record = p.record
	}
	var err error
	if p.ignore, err = newIgnoreList(cfg.Ignore); err != nil {
		return nil, fmt.Errorf("%s: ignore: %w", cfg.File, err)
	}
	named, err := buildActions(cfg, p.log)
	if err != nil {
		return nil, err
	}
	for _, rc := range cfg.Rules {
		r := &rule{
			name: rc.Name, keyType: rc.Key, limit: rc.Limit, per: time.Duration(rc.Per), block: time.Duration(rc.Block),
			counter: window.New(rc.Limit, time.Duration(rc.Per)), blocked: map[string]*state.Block{},
		}
		if rc.Prefix != nil {
			r.bits4, r.bits6 = rc.Prefix.IPv4, rc.Prefix.IPv6
		}
		for _, k := range rc.On {
			kind, _ := parsers.ParseKind(k)
			r.kinds[kind] = true
		}
		for _, a := range rc.Actions {
			r.actions = append(r.actions, named[a])
		}
		p.rules = append(p.rules, r)
		p.byName[r.name] = r
	}
	if opts.Store != nil {
		if err := p.restore(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// restore loads the saved windows and blocks. Windows of rules no longer in
// the config are dropped; their blocks still run to their end.
func (p *Pipeline) restore() error {
	snap, err := p.opts.Store.Load()
	if err != nil {
		return err
	}
	p.clock, p.nextID, p.positions = snap.Clock, snap.NextID, snap.Positions
	for _, w := range snap.Windows {
		if r := p.byName[w.Rule]; r != nil {
			r.counter.Restore(w.Key, w.Times)
		}
	}
	for i := range snap.Blocks {
		b := &snap.Blocks[i]
		if r := p.byName[b.Rule]; r != nil {
			r.blocked[b.Key] = b
		}
		if !b.Until.IsZero() {
			heap.Push(&p.expiry, b)
		}
	}
	return nil
}

// Positions are the input positions saved by an earlier run, by absolute
// path, for OpenSource.
func (p *Pipeline) Positions() map[string]state.Position { return p.positions }

// buildActions makes the config's named actions, and "log".
func buildActions(cfg *config.Config, log *slog.Logger) (map[string]actions.Action, error) {
	named := map[string]actions.Action{"log": &actions.Log{Logger: log}}
	for name, a := range cfg.Actions {
		switch a.Type {
		case "log":
			named[name] = &actions.Log{ActionName: name, Logger: log}
		case "script":
			named[name] = &actions.Script{ActionName: name, Command: a.Command, UnblockCommand: a.UnblockCommand,
				Timeout: time.Duration(a.Timeout), DryRunOnly: a.DryRun, Logger: log}
		default:
			return nil, fmt.Errorf("%s: actions.%s: type %q is not implemented", cfg.File, name, a.Type)
		}
	}
	return named, nil
}

func (p *Pipeline) logAction() actions.Action {
	return &actions.Log{Logger: p.log}
}
