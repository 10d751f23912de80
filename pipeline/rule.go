package pipeline

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bombwatch/bombwatch/actions"
	"github.com/bombwatch/bombwatch/input"
	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/state"
	"github.com/bombwatch/bombwatch/window"
)

// Setup is what a pipeline runs: its rules, the actions they name, and
// what never counts. The config package builds it from a config file;
// the pipeline knows nothing of files or YAML.
type Setup struct {
	Rules   []Rule
	Actions map[string]actions.Action // by name; "log" among them
	Ignore  []string                  // addresses, networks, senders, @domains, uid:N, <>
	// Retention is how long the stats reports read are kept (0: forever),
	// unless Options says otherwise; MaxKeys the cap on keys (0: the
	// default), likewise.
	Retention time.Duration
	MaxKeys   int
}

// Rule is one rule: which events count, under which key, measured how,
// and what a key over its limit gets.
type Rule struct {
	Name    string
	On      []parsers.Kind
	Key     string // sender, sender_domain, client_ip, client_net, sasl_user, uid
	Bits4   int    // client_net prefix lengths
	Bits6   int
	Measure string   // count, bytes, recipients, distinct, burst
	Of      string   // what distinct counts the values of: a key type
	Windows []Window // the limits, for all measures but burst
	// Soft, Hard and Expire are the burst measure's.
	Soft, Hard float64
	Expire     time.Duration
	Block      time.Duration
	// Release lifts a block as soon as every window is back at its limit.
	Release  bool
	Forgive  int64
	Escalate *Escalate
	Adapt    *Adapt
	// StripTag, StripBATV and DecodeSRS are the sender key's options.
	StripTag, StripBATV, DecodeSRS bool
	// OnClients: the firewall and map actions act on the client addresses
	// that sent a blocked key's mail, not on the key: for a sender key,
	// those that sent its mail; for a client_net key, its members that
	// sent mail within the window, and any more that send while it is
	// blocked.
	OnClients bool
	Actions   []string
}

// Window is one limit over one sliding window.
type Window struct {
	Limit int64
	Per   time.Duration
}

// Adapt raises a key's effective limit in each window to Factor times the
// highest measure the key itself reached in that window over History — in
// the buckets of it that are over, and never while blocked — at most Max
// times the limit and never under it.
type Adapt struct {
	History time.Duration
	Factor  float64
	Max     float64
}

// Escalate lengthens the blocks of repeat offenders: each block of a key
// lasts Factor times its previous one, at most Max.
type Escalate struct {
	Factor float64
	Max    time.Duration
}

// rule is a Rule made ready to run: it turns events into keys and
// measures them in its windows, or its burst score.
type rule struct {
	name    string
	keyType string
	measure string
	kinds   [8]bool // by parsers.Kind
	bits4   int     // client_net prefix lengths
	bits6   int
	windows []window.Measure // count, bytes, recipients, distinct
	// counters are the windows as the rule adds to them: shared with
	// other rules (see New), or its own; own lists the indexes of those
	// it saves (those it made); limits are its limits, by window.
	counters []*counter
	own      []int
	limits   []int64
	of       *rule // distinct: reads the value counted, as a key
	ofBuf    []byte
	// rate is the window without forgiveness, for release: below on a
	// forgiving rule: the count restarts at -forgive, the rate does not.
	rate     *window.Window
	burst    *window.Burst // burst
	soft     float64
	hard     float64
	block    time.Duration
	release  bool  // lift as soon as every window is back at its limit
	forgive  int64 // restart the count at -forgive when a block starts
	escalate *Escalate
	adapt    *Adapt
	peaks    []*window.Peaks // by window, with adapt
	values   []int64         // the measures of the event being run, by window
	bases    []int64         // with adapt, the limits it adapts: the windows count up to max times them
	strip    senderOptions
	actions  []actions.Action
	// onClients: the rule's firewall and map actions act on the client
	// addresses that sent a blocked key's mail, not on the key (a sender
	// rule's enforce: clients).
	onClients bool
	// seenFrom, for a network rule that enforces on its members, are the
	// addresses its keys' events came from.
	seenFrom *contributors
	blocked  map[string]*active // keys in force, by key
	swept    time.Time          // when idle keys were last dropped
	longest  time.Duration      // the longest window, or the burst's expiry
	stores   []namedWindow      // the windows saved, with their names
	spec     int                // the index of its keySpec in the pipeline's
}

// limit is window i's effective limit for key at t: the limit, raised by
// adapt to the key's own normal.
func (r *rule) limit(i int, key []byte, t time.Time) int64 {
	if r.adapt == nil {
		return r.limits[i]
	}
	base := r.bases[i]
	adapted := int64(r.adapt.Factor * float64(r.peaks[i].Peak(string(key), t)))
	return max(base, min(adapted, int64(r.adapt.Max*float64(base))))
}

// baseLimit is the configured limit of the rule's window of length per,
// for a rule with adapt; false otherwise (or for a rule no longer in the
// config: r is nil).
func (r *rule) baseLimit(per time.Duration) (int64, bool) {
	if r == nil || r.adapt == nil {
		return 0, false
	}
	for i, w := range r.windows {
		if w.Per() == per {
			return r.bases[i], true
		}
	}
	return 0, false
}

// amount is what an event adds to the rule's measure; false when the event
// does not say (a size the log did not give).
func (r *rule) amount(e *parsers.Event) (int64, bool) {
	switch r.measure {
	case "distinct":
		v, ok := r.of.appendKey(r.ofBuf[:0], e)
		r.ofBuf = v
		return window.Hash(v), ok
	case "bytes":
		return e.Size, e.Size >= 0
	case "recipients":
		return e.NRcpt, e.NRcpt >= 0
	}
	return 1, true
}

// windowName names a window of the rule in the store.
func (r *rule) windowName(i int) string { return r.name + "/" + strconv.Itoa(i) }

// namedWindow is one of a rule's windows with its name in the store.
type namedWindow struct {
	name string
	w    window.Saved
}

// makeStores lists the rule's windows with their names in the store, once:
// the pipeline goes through them at every commit and sweep.
func (r *rule) makeStores() {
	for _, i := range r.own {
		r.stores = append(r.stores, namedWindow{r.windowName(i), r.windows[i]})
	}
	for i, p := range r.peaks {
		r.stores = append(r.stores, namedWindow{r.windowName(i) + "/peaks", p})
	}
	if r.rate != nil {
		r.stores = append(r.stores, namedWindow{r.name + "/rate", r.rate})
	}
}

// counter is a window as rules add to it: a shared one is added to once
// an event, whatever the number of rules that read it.
type counter struct {
	w       window.Measure
	readers []reader // the rules that read it, and which of their windows it is
	shared  bool
	epoch   uint64 // the event last added: value is its measure
	value   int64
}

// reader is a rule's window i.
type reader struct {
	r *rule
	i int
}

// shareKey names what a rule's window of length per measures, for rules
// to share it; false when the rule needs a window of its own: adapt
// keeps what a key's own limit needs, forgiveness and release read and
// change the window by the rule's limit.
func shareKey(rc Rule, per time.Duration) (string, bool) {
	if rc.Adapt != nil || rc.Forgive > 0 || rc.Release || rc.Measure == "burst" {
		return "", false
	}
	kinds := slices.Clone(rc.On)
	slices.Sort(kinds)
	kinds = slices.Compact(kinds)
	return fmt.Sprintf("%s %d %d %v %v %v %v %s %s %d", rc.Key, rc.Bits4, rc.Bits6, rc.StripTag, rc.StripBATV, rc.DecodeSRS,
		kinds, rc.Measure, rc.Of, per), true
}

// keySpec is what makes a rule's key of an event: rules with the same
// spec have the same key, made once an event.
type keySpec struct {
	keyType      string
	bits4, bits6 int
	strip        senderOptions
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
		// Folded as the MTAs' maps fold it: Bomber@x and bomber@x are one
		// map entry, so they are one key.
		start := len(buf)
		buf = r.strip.appendSender(buf, e.Sender)
		foldASCII(buf[start:])
		return buf, true
	case "sender_domain":
		if !e.HasSender {
			return buf, false
		}
		start := len(buf)
		buf = r.strip.appendSender(buf, e.Sender)
		at := bytes.LastIndexByte(buf[start:], '@')
		if at < 0 || start+at+1 == len(buf) {
			return buf[:start], false
		}
		return append(buf[:start], buf[start+at+1:]...), true
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
	nets       []netip.Prefix
	senders    map[string]bool
	domains    map[string]bool
	uids       map[int64]bool
	nullSender bool
}

func newIgnoreList(entries []string) (*ignoreList, error) {
	l := &ignoreList{senders: map[string]bool{}, domains: map[string]bool{}, uids: map[int64]bool{}}
	for _, s := range entries {
		switch {
		case s == "<>":
			l.nullSender = true
		case strings.HasPrefix(s, "uid:"):
			n, _ := strconv.ParseInt(s[4:], 10, 64)
			l.uids[n] = true
		case strings.HasPrefix(s, "@"):
			l.domains[strings.ToLower(s[1:])] = true
		case strings.Contains(s, "@"):
			l.senders[actions.FoldAddress(strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">"))] = true
		case strings.Contains(s, "/"):
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not a valid CIDR", s)
			}
			l.nets = append(l.nets, p.Masked())
		default:
			a := netip.MustParseAddr(s).Unmap()
			l.nets = append(l.nets, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return l, nil
}

// foldASCII lower-cases ASCII letters in place.
func foldASCII(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}

// key reports whether a key is never to be one: "uid:N" entries and "<>"
// name keys, not events, since every message qmail takes by SMTP carries
// qmaild's uid, and a bounce's client still counts.
func (l *ignoreList) key(keyType string, key []byte) bool {
	switch keyType {
	case "uid":
		if len(l.uids) == 0 {
			return false
		}
		n, err := strconv.ParseInt(string(key), 10, 64)
		return err == nil && l.uids[n]
	case "sender":
		return l.nullSender && string(key) == "<>"
	}
	return false
}

// event reports whether an event counts for no rule: its client address is
// in a listed network, or its sender or sender domain is listed.
func (l *ignoreList) event(e *parsers.Event) bool {
	if e.ClientIP.IsValid() {
		for _, n := range l.nets {
			if n.Contains(e.ClientIP) {
				return true
			}
		}
	}
	if e.HasSender && e.Sender != "" {
		if len(l.senders) > 0 && l.senders[actions.FoldAddress(e.Sender)] {
			return true
		}
		if len(l.domains) > 0 && l.domains[e.SenderDomain()] {
			return true
		}
	}
	return false
}

// New makes a pipeline for s, restoring the state in opts.Store.
func New(s Setup, opts Options) (*Pipeline, error) {
	if opts.CommitEvery <= 0 {
		opts.CommitEvery = 16384
	}
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = s.MaxKeys
	}
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	if opts.Retention == 0 {
		opts.Retention = s.Retention
	}
	p := &Pipeline{opts: opts, named: s.Actions, byName: map[string]*rule{}, unsaved: map[int64]*state.Block{}, inFlight: map[int64]*state.Block{}, log: opts.Logger,
		batch: &state.Batch{}, spare: &state.Batch{},
		offenses: map[offenseKey]state.Offense{}, inForce: map[int64]*active{}, holds: map[holdKey]*holding{}}
	if p.log == nil {
		p.log = slog.Default()
	}
	if opts.Executor != nil {
		opts.Executor.Record = p.record
	}
	var err error
	if p.ignore, err = newIgnoreList(s.Ignore); err != nil {
		return nil, fmt.Errorf("ignore: %w", err)
	}
	var specs []keySpec
	// Rules that measure the same thing of the same key over the same
	// period share one window, kept exact up to the highest of their
	// limits: a thousand rules that differ only by limit cost one.
	type sharing struct {
		limit int64
		w     *counter
	}
	shared := map[string]*sharing{}
	for _, rc := range s.Rules {
		for _, w := range rc.Windows {
			if k, ok := shareKey(rc, w.Per); ok {
				if sh := shared[k]; sh == nil {
					shared[k] = &sharing{limit: w.Limit}
				} else {
					sh.limit = max(sh.limit, w.Limit)
				}
			}
		}
	}
	for _, rc := range s.Rules {
		r := &rule{
			name: rc.Name, keyType: rc.Key, measure: rc.Measure, block: rc.Block,
			release: rc.Release, forgive: rc.Forgive, escalate: rc.Escalate, adapt: rc.Adapt,
			strip:     senderOptions{tag: rc.StripTag, batv: rc.StripBATV, srs: rc.DecodeSRS},
			blocked:   map[string]*active{},
			onClients: rc.OnClients,
			bits4:     rc.Bits4, bits6: rc.Bits6,
		}
		if rc.Measure == "burst" {
			r.burst = window.NewBurst(rc.Expire)
			r.soft, r.hard, r.longest = rc.Soft, rc.Hard, rc.Expire
		}
		for _, w := range rc.Windows {
			limit := w.Limit
			if rc.Adapt != nil {
				// Exact up to the highest limit the key may be given.
				r.bases = append(r.bases, w.Limit)
				limit = int64(rc.Adapt.Max * float64(w.Limit))
			}
			k, share := shareKey(rc, w.Per)
			var c *counter
			if sh := shared[k]; share && sh.w != nil {
				c = sh.w // made for an earlier rule, which saves it
			} else {
				keep := limit
				if share {
					keep = sh.limit
				}
				c = &counter{shared: share}
				if rc.Measure == "distinct" {
					c.w = window.NewDistinct(keep, w.Per)
				} else {
					c.w = window.New(keep, w.Per)
				}
				if share {
					sh.w = c
				}
				r.own = append(r.own, len(r.windows))
			}
			c.readers = append(c.readers, reader{r, len(r.windows)})
			r.windows = append(r.windows, c.w)
			r.counters = append(r.counters, c)
			r.limits = append(r.limits, limit)
			r.longest = max(r.longest, w.Per)
		}
		if rc.Adapt != nil {
			for range rc.Windows {
				r.peaks = append(r.peaks, window.NewPeaks(rc.Adapt.History))
			}
		}
		if rc.Measure == "distinct" {
			r.of = &rule{keyType: rc.Of, strip: r.strip, bits4: r.bits4, bits6: r.bits6}
		}
		if r.onClients && r.keyType == "client_net" && len(rc.Windows) > 0 {
			most := int64(0)
			for _, l := range r.limits {
				most = max(most, l+1) // with adapt, the highest it may be given
			}
			r.seenFrom = newContributors(int(min(most, maxMembers)))
		}
		if r.forgive > 0 && r.release {
			r.rate = window.New(rc.Windows[0].Limit, rc.Windows[0].Per)
		}
		for _, k := range rc.On {
			if !r.kinds[k&7] {
				p.byKind[k&7] = append(p.byKind[k&7], r)
			}
			r.kinds[k&7] = true
		}
		spec := keySpec{r.keyType, r.bits4, r.bits6, r.strip}
		if r.spec = slices.Index(specs, spec); r.spec < 0 {
			r.spec, specs = len(specs), append(specs, spec)
		}
		r.makeStores()
		for _, name := range rc.Actions {
			a, ok := s.Actions[name]
			if !ok {
				return nil, fmt.Errorf("rule %s: no action %q", rc.Name, name)
			}
			r.actions = append(r.actions, a)
		}
		p.rules = append(p.rules, r)
		p.byName[r.name] = r
	}
	p.keys = make([]eventKey, len(specs))
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
	p.clock, p.positions = snap.Clock, snap.Positions
	p.savedPositions = maps.Clone(snap.Positions)
	p.files, p.fileIDs = snap.Files, make(map[string]uint64, len(snap.Files))
	for i, f := range snap.Files {
		p.fileIDs[f] = uint64(i + 1)
	}
	for _, o := range snap.Offenses {
		p.offenses[offenseKey{o.Rule, o.Key}] = o
	}
	// IDs for the blocks decided while a shared store cannot be reached
	// (see blockID): set aside now, they are this host's.
	p.setAsideIDs()
	p.windowsDue = true // a released block's end waits for its windows
	for i := range snap.Blocks {
		p.adopt(&active{Block: snap.Blocks[i]})
	}
	if p.opts.DeferWindows {
		return nil
	}
	return p.RestoreWindows()
}

// adopt takes a saved block in force as its own: it is lifted on time, and
// what its actions hold is counted.
func (p *Pipeline) adopt(a *active) {
	a.holdMembers()
	if r := p.byName[a.Rule]; r != nil {
		a.rule = r
		r.blocked[a.Key] = a
		if r.release && !p.windowsDue {
			p.scheduleRelease(a)
		}
	}
	if p.parts.due != 0 {
		p.needKey(a.Key) // a ban made by hand, or on another host
	}
	for _, act := range p.actionsOf(a) {
		if act.External() {
			for _, t := range a.targets(act) {
				p.hold(act, t, a.Until)
			}
		}
	}
	p.schedule(a, a.Until)
	p.inForce[a.ID] = a
}

// SyncManual takes in the blocks started and lifted elsewhere since the
// state was loaded or last synced: by hand (`bombwatch bans`), or — in a
// store several hosts share — by another host. A block is adopted: it is
// lifted on time here, and the actions it has not run on this host run
// (none, for a ban made by hand here: the command ran them). A block
// lifted elsewhere is dropped; its actions are lifted here unless it was
// lifted on this host (by `bans unban`, which lifted them). The state is
// saved first, so that what is in force here and in the store differ
// only by what was done elsewhere.
func (p *Pipeline) SyncManual(m *input.Merger) error {
	if p.opts.Store == nil {
		return nil
	}
	if err := p.Commit(m); err != nil {
		return err
	}
	saved, err := p.opts.Store.Blocks(true, time.Time{})
	if err != nil {
		return err
	}
	here := ""
	if h, ok := p.opts.Store.(interface{ Host() string }); ok {
		here = h.Host()
	}
	inStore := map[int64]bool{}
	for _, b := range saved {
		inStore[b.ID] = true
		if p.inForce[b.ID] == nil {
			a := &active{Block: b}
			p.adopt(a)
			if !p.enforceHere(a) {
				p.log.Info("ban made by hand", "rule", b.Rule, "key_type", b.KeyType, "key", b.Key, "until", b.Until)
			}
		}
	}
	var gone []*active
	since := time.Time{}
	for _, a := range p.inForce {
		if !inStore[a.ID] {
			gone = append(gone, a)
			if since.IsZero() || a.Since.Before(since) {
				since = a.Since
			}
		}
	}
	if len(gone) == 0 {
		return nil
	}
	ended := map[int64]state.Block{}
	if here != "" {
		all, err := p.opts.Store.Blocks(false, since.Add(-time.Nanosecond))
		if err != nil {
			return err
		}
		for _, b := range all {
			ended[b.ID] = b
		}
	}
	slices.SortFunc(gone, func(x, y *active) int { return cmp.Compare(x.ID, y.ID) })
	for _, ia := range gone {
		delete(p.inForce, ia.ID)
		if r := ia.rule; r != nil && r.blocked[ia.Key] == ia {
			delete(r.blocked, ia.Key)
		}
		if b, ok := ended[ia.ID]; ok && b.EndedOn != "" && b.EndedOn != here {
			// Lifted by another host: its actions are lifted here too.
			p.log.Info("block lifted by another host", "rule", ia.Rule, "key_type", ia.KeyType, "key", ia.Key, "host", b.EndedOn, "reason", b.EndReason)
			ia.Ended, ia.EndReason = b.Ended, b.EndReason
			p.Stats.Unblocks++
			p.act("unblock", ia, b.Ended, b.EndReason, p.actionsOf(ia), nil)
			continue
		}
		// Lifted by hand here: drop it, and what it held, without acting.
		p.log.Info("block lifted by hand", "rule", ia.Rule, "key_type", ia.KeyType, "key", ia.Key)
		ia.Ended = p.clock
		for _, act := range p.actionsOf(ia) {
			if act.External() {
				for _, t := range ia.targets(act) {
					p.release(act, t)
				}
			}
		}
	}
	return nil
}

// LiftedAway lifts here blocks that were in force on this host when it
// last ran (its journal says) and that another host lifted since, by
// hand or on time: their actions run their unblock here. Those that can
// tell what they hold (firewall sets, maps) are left to Reapply, which
// makes them hold exactly the blocks in force; so is an action whose
// target a block in force still holds.
func (p *Pipeline) LiftedAway(blocks []state.Block) {
	for _, b := range blocks {
		if p.inForce[b.ID] != nil {
			continue
		}
		a := &active{Block: b, rule: p.byName[b.Rule]}
		a.holdMembers()
		var run []actions.Action
		for _, act := range p.actionsOf(a) {
			if _, ok := act.(actions.Reconciler); ok {
				continue
			}
			held := false
			if act.External() {
				for _, t := range a.targets(act) {
					held = held || p.holds[holdKey{act.Name(), t}] != nil
				}
			}
			if !held {
				run = append(run, act)
			}
		}
		p.log.Info("block lifted by another host while this one was away", "rule", b.Rule, "key_type", b.KeyType, "key", b.Key, "host", b.EndedOn, "reason", b.EndReason)
		p.act("unblock", a, b.Ended, b.EndReason, run, nil)
	}
}

// enforceHere runs the actions of an adopted block that no action ran
// on this host yet — another host decided it, or banned it by hand — and
// reports whether it did. A ban made by hand here was acted on by the
// command: some outcome is recorded. adopt already counted what the
// actions hold.
func (p *Pipeline) enforceHere(a *active) bool {
	if len(a.Actions) == 0 {
		return false
	}
	for _, st := range a.Actions {
		if st != "" && st != state.Pending {
			return false
		}
	}
	p.log.Info("block from another host", "rule", a.Rule, "key_type", a.KeyType, "key", a.Key, "until", a.Until, "seen_on", a.Host)
	p.Stats.Blocks++
	p.dispatch("block", a, a.Since, "", p.actionsOf(a), nil, false)
	return true
}

// Actions returns the config's actions, made, by name: the daemon sets up
// and cleans up those that need it.
func (p *Pipeline) Actions() []actions.Action {
	var out []actions.Action
	for _, name := range slices.Sorted(maps.Keys(p.named)) {
		if name != "log" {
			out = append(out, p.named[name])
		}
	}
	return out
}

// actionsOf are the actions a block runs: its rule's, or for a block whose
// rule is not in the config — a ban made by hand, a rule since removed —
// those it was applied with that the config still has.
func (p *Pipeline) actionsOf(a *active) []actions.Action {
	if a.rule != nil {
		return a.rule.actions
	}
	acts := []actions.Action{p.logAction()}
	for _, name := range slices.Sorted(maps.Keys(a.Actions)) {
		if act, ok := p.named[name]; ok && name != "log" {
			acts = append(acts, act)
		}
	}
	return acts
}

// Reapply makes the external actions of the blocks in force hold again —
// at start and after a reload — doing only what is missing. An action
// that can tell what it holds (a firewall set, a map: a Reconciler) is
// made to hold exactly the blocks' targets: nothing runs when nothing was
// lost, a block the firewall lost (a reboot) is applied again for the
// time it has left, an entry no block holds is removed. Any other action
// (a script, a notice) runs only for a block it has not been applied to:
// pending or failed when bombwatch stopped, or new to the block's rule
// since the reload. A crash loop never runs a hook or sends a notice twice
// for one block.
func (p *Pipeline) Reapply(ctx context.Context, now time.Time) {
	x := p.opts.Executor
	if x == nil {
		return
	}
	want := map[string][]actions.Detection{} // by Reconciler
	type use struct {
		id     int64
		action string
	}
	var reconciled []use
	for _, b := range p.Active() {
		a := p.inForce[b.ID]
		d := actions.Detection{Event: "block", Time: a.Since, BlockID: a.ID, Rule: a.Rule, KeyType: a.KeyType, Key: a.Key,
			Value: a.Value, Limit: a.Limit, Window: a.Window, Until: a.Until, Now: now}
		for _, act := range p.actionsOf(a) {
			if !act.External() {
				continue
			}
			_, canTell := act.(actions.Reconciler)
			canTell = canTell && x.Act && !actions.IsDryRun(act)
			status := a.Actions[act.Name()]
			if !canTell && (status == state.Applied || status == state.DryRun) {
				continue
			}
			for _, t := range a.targets(act) {
				td := d
				td.KeyType, td.Key = t.keyType, t.key
				if h := p.holds[holdKey{act.Name(), t}]; h != nil {
					td.Until = h.until // the latest end of the blocks holding it
				}
				if canTell {
					want[act.Name()] = append(want[act.Name()], td)
				} else {
					x.Dispatch(td, []actions.Action{act})
				}
			}
			if canTell && status != state.Applied {
				reconciled = append(reconciled, use{a.ID, act.Name()})
			}
		}
	}
	if !x.Act {
		return
	}
	failed := map[string]bool{}
	for _, act := range p.Actions() {
		r, ok := act.(actions.Reconciler)
		if !ok || actions.IsDryRun(act) {
			continue
		}
		if err := r.Reconcile(ctx, want[act.Name()]); err != nil {
			// What it could not tell or change is applied one by one,
			// with the Executor's retries.
			p.log.Error("action: bring in line with the blocks in force", "action", act.Name(), "err", err)
			failed[act.Name()] = true
			for _, d := range want[act.Name()] {
				x.Dispatch(d, []actions.Action{act})
			}
		}
	}
	for _, u := range reconciled {
		if !failed[u.action] {
			p.record(u.id, u.action, state.Applied)
		}
	}
}

// Positions are the input positions saved by an earlier run, by absolute
// path, for OpenSource.
func (p *Pipeline) Positions() map[string]state.Position { return p.positions }

func (p *Pipeline) logAction() actions.Action {
	return &actions.Log{Logger: p.log}
}
