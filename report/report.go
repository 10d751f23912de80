// Package report turns the state database into what a postmaster reads in
// the morning: what happened, who sent it, what was blocked, and how to set
// the limits from the server's own traffic.
//
// It reads the per-minute counts the pipeline saved (sqlite.Store.Stats)
// and the blocks; it never reads the logs again. Every string in it came
// from a log that an attacker may have written: the formats escape them
// (html/template for HTML, encoding/csv and encoding/json for the others,
// quoting in text).
package report

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/state"
)

// Options choose what a report covers.
type Options struct {
	Since, Until time.Time
	Top          int
	// By ranks the top keys: messages (default), bytes or recipients.
	By     string
	WhatIf *WhatIf // a candidate rule to try on the period
	// Net4 and Net6 are the prefix lengths client networks are summed at:
	// the rules' (see NetPrefixes); 24 and 48 when zero.
	Net4, Net6 int
}

// WhatIf is a candidate rule: "sender 20/1m".
type WhatIf struct {
	KeyType string
	Limit   int64
	Per     time.Duration
}

// ParseWhatIf reads "KEYTYPE LIMIT/PER".
func ParseWhatIf(s string, parseDuration func(string) (time.Duration, error)) (*WhatIf, error) {
	typ, rest, ok := strings.Cut(strings.TrimSpace(s), " ")
	lim, per, ok2 := strings.Cut(strings.TrimSpace(rest), "/")
	if !ok || !ok2 || !slices.Contains(KeyTypes, typ) {
		return nil, fmt.Errorf("%q is not \"KEY LIMIT/PER\" (KEY: %s)", s, strings.Join(KeyTypes, ", "))
	}
	var w WhatIf
	w.KeyType = typ
	if _, err := fmt.Sscan(lim, &w.Limit); err != nil || w.Limit < 1 {
		return nil, fmt.Errorf("%q: the limit must be a whole number", s)
	}
	d, err := parseDuration(per)
	if err != nil || d < time.Minute {
		return nil, fmt.Errorf("%q: the window must be a duration of a minute or more (counts are per minute)", s)
	}
	w.Per = d
	return &w, nil
}

// KeyTypes are the keys a report ranks.
var KeyTypes = []string{"sender", "sender_domain", "client_ip", "client_net", "sasl_user"}

// Report is one report, as `report --format json` prints it.
type Report struct {
	Since  time.Time             `json:"since"`
	Until  time.Time             `json:"until"`
	Totals map[string]int64      `json:"totals"`
	Hours  []Hour                `json:"hours"`
	Top    map[string][]TopEntry `json:"top"`
	Blocks []Block               `json:"blocks"`
	// Repeat are the keys blocked more than once in the period.
	Repeat  []Repeat          `json:"repeat_offenders"`
	Lost    Lost              `json:"lost_connections"`
	Advisor map[string]Advice `json:"advisor"`
	WhatIf  *WhatIfResult     `json:"what_if,omitempty"`
	// Hosts are the hosts whose counts the report adds up, in a state
	// several hosts share (the caller says); empty otherwise.
	Hosts []string `json:"hosts,omitempty"`
}

// Hour is the events of an hour, by kind.
type Hour struct {
	Hour   time.Time        `json:"hour"`
	Events map[string]int64 `json:"events"`
}

// TopEntry is a key's traffic in the period.
type TopEntry struct {
	Key        string `json:"key"`
	Messages   int64  `json:"messages"`
	Bytes      int64  `json:"bytes"`
	Recipients int64  `json:"recipients"`
}

// Block is a detection with its end: the fields of `replay --json`'s
// detections, and when and why it ended.
type Block struct {
	Event   string     `json:"event"` // "block"
	Rule    string     `json:"rule"`
	KeyType string     `json:"key_type"`
	Key     string     `json:"key"`
	Time    time.Time  `json:"time"` // when it started
	Value   float64    `json:"value"`
	Limit   float64    `json:"limit"`
	Window  string     `json:"window"`
	Until   *time.Time `json:"until,omitempty"`
	Ended   *time.Time `json:"ended,omitempty"`
	Reason  string     `json:"reason,omitempty"`
	Actions []string   `json:"actions"`
	// Executed is false when the block's actions were only reported.
	Executed bool `json:"executed"`
	// Status is each action's outcome: applied, failed, pending, dry_run.
	Status map[string]string `json:"action_status"`
	File   string            `json:"file,omitempty"`
	Line   int64             `json:"line,omitempty"`
	// Members are the client addresses enforced for a rule that enforces
	// on clients.
	Members []string `json:"members,omitempty"`
	// Host is where the event that crossed the limit was seen.
	Host string `json:"host,omitempty"`
}

// Repeat is a key blocked more than once.
type Repeat struct {
	KeyType string `json:"key_type"`
	Key     string `json:"key"`
	Blocks  int    `json:"blocks"`
}

// Lost is how long the clients that dropped their connections stayed.
type Lost struct {
	Total      int64        `json:"total"`
	Timed      int64        `json:"timed"` // of those, with their connect seen
	Buckets    []LostBucket `json:"buckets"`
	Within35s  float64      `json:"gone_within_35s"` // share of the timed ones a 35 s delay would have outlasted
	Within65s  float64      `json:"gone_within_65s"`
	Pipelining int64        `json:"improper_pipelining"`
}

// LostBucket is 10 seconds of the histogram.
type LostBucket struct {
	From       int64   `json:"from_seconds"`
	Count      int64   `json:"count"`
	Cumulative float64 `json:"cumulative_share"`
}

// Advice is a key type's busiest minute and hour, over its keys.
type Advice struct {
	Keys   int     `json:"keys"`
	Minute Centile `json:"busiest_minute"`
	Hour   Centile `json:"busiest_hour"`
	// Dropped is how many times a key of the least traffic was let go to keep
	// the report's memory bounded (more than 100,000 keys of the type in
	// the period): their busiest minute and hour still count in the
	// centiles, but a key that came back counts again from there, and
	// the counts of the keys kept may be short by at most ShortBy
	// messages. Both are 0 when every key was kept: the report is exact.
	Dropped int   `json:"dropped_keys,omitempty"`
	ShortBy int64 `json:"counts_short_by,omitempty"`
}

// Centile summarises the keys' busiest periods.
type Centile struct {
	P50 int64 `json:"p50"`
	P99 int64 `json:"p99"`
	Max int64 `json:"max"`
}

// WhatIfResult is the keys a candidate rule would have blocked.
type WhatIfResult struct {
	Rule string     `json:"rule"`
	Keys []TopEntry `json:"keys"` // messages: the most in any window
}

// Build makes a report from a state database.
func Build(s state.Reader, o Options) (*Report, error) {
	if o.Top <= 0 {
		o.Top = 10
	}
	r := &Report{Since: o.Since.UTC(), Until: o.Until.UTC(), Totals: map[string]int64{}, Top: map[string][]TopEntry{},
		Advisor: map[string]Advice{}, Blocks: []Block{}, Repeat: []Repeat{}, Hours: []Hour{}}
	for _, k := range parsers.Kinds() {
		r.Totals[k.String()] = 0
	}
	first, last := o.Since.Unix()/60, (o.Until.Unix()-1)/60
	hours := map[int64]map[string]int64{}
	tallies := map[string]*tally{}
	for _, typ := range KeyTypes {
		tallies[typ] = newTally(maxReportKeys, o.WhatIf != nil && o.WhatIf.KeyType == typ)
	}
	// Each family of key types (a sender and its domain, an address and
	// its network, a user) is added up on a goroutine of its own, while
	// the stats are read: the tallies' map lookups are most of a report.
	families := map[string]*family{}
	bits4, bits6 := cmp.Or(o.Net4, 24), cmp.Or(o.Net6, 48)
	var added sync.WaitGroup
	for _, typ := range []string{"sender", "client_ip", "sasl_user"} {
		f := &family{work: make(chan []state.Stat, 4), free: make(chan []state.Stat, 6)}
		families[typ] = f
		own, of := tallies[typ], tallies[derivedType[typ]]
		added.Go(func() {
			for batch := range f.work {
				for i := range batch {
					st := &batch[i]
					k := own.add(st.Key, st)
					if of == nil {
						continue
					}
					// An address's network is made once, when the address
					// is first added, not for each of its minutes.
					if k.derived == "" {
						var ok bool
						if k.derived, ok = derived(typ, st.Key, bits4, bits6); !ok {
							k.derived = noDerived
						}
					}
					if k.derived != noDerived {
						of.add(k.derived, st)
					}
				}
				select {
				case f.free <- batch[:0]:
				default:
				}
			}
		})
	}
	lost := map[int64]int64{}
	err := s.Stats(first, last, func(st *state.Stat) {
		switch st.KeyType {
		case "kind":
			r.Totals[st.Key] += st.Messages
			h := hours[st.Minute/60]
			if h == nil {
				h = map[string]int64{}
				hours[st.Minute/60] = h
			}
			h[st.Key] += st.Messages
		case "lost":
			r.Lost.Total += st.Messages
			if st.Key != "unknown" {
				var from int64
				fmt.Sscan(st.Key, &from)
				lost[from] += st.Messages
				r.Lost.Timed += st.Messages
			}
		case "pipelining":
			r.Lost.Pipelining += st.Messages
		case "sender", "client_ip", "sasl_user":
			f := families[st.KeyType]
			if f.batch = append(f.batch, *st); len(f.batch) == familyBatch {
				f.send()
			}
		}
	})
	for _, f := range families {
		f.send()
		close(f.work)
	}
	added.Wait()
	if err != nil {
		return nil, err
	}
	for _, h := range slices.Sorted(maps.Keys(hours)) {
		r.Hours = append(r.Hours, Hour{Hour: time.Unix(h*3600, 0).UTC(), Events: hours[h]})
	}
	for _, typ := range KeyTypes {
		t := tallies[typ]
		list := make([]TopEntry, len(t.keys))
		for i := range t.keys {
			list[i] = t.keys[i].TopEntry
		}
		measure := func(e TopEntry) int64 {
			switch o.By {
			case "bytes":
				return e.Bytes
			case "recipients":
				return e.Recipients
			}
			return e.Messages
		}
		sort.Slice(list, func(i, j int) bool {
			if a, b := measure(list[i]), measure(list[j]); a != b {
				return a > b
			}
			return list[i].Key < list[j].Key
		})
		r.Top[typ] = append([]TopEntry{}, list[:min(len(list), o.Top)]...)
		minutes, hourly := t.bests()
		r.Advisor[typ] = Advice{Keys: t.seen(), Minute: centiles(minutes), Hour: centiles(hourly), Dropped: t.dropped, ShortBy: t.floor}
	}
	r.Lost.Buckets = []LostBucket{}
	var cum int64
	for _, from := range slices.Sorted(maps.Keys(lost)) {
		cum += lost[from]
		r.Lost.Buckets = append(r.Lost.Buckets, LostBucket{From: from, Count: lost[from], Cumulative: share(cum, r.Lost.Timed)})
		if from+10 <= 35 {
			r.Lost.Within35s = share(cum, r.Lost.Timed)
		}
		if from+10 <= 65 {
			r.Lost.Within65s = share(cum, r.Lost.Timed)
		}
	}
	if o.WhatIf != nil {
		t := tallies[o.WhatIf.KeyType]
		r.WhatIf = whatIf(o.WhatIf, func(yield func(string, map[int64]int64)) {
			for i := range t.keys {
				k := &t.keys[i]
				var minutes []minuteCount
				if k.minutes != nil {
					minutes = *k.minutes
				}
				m := make(map[int64]int64, len(minutes))
				for _, mc := range minutes {
					m[mc.minute] += mc.n
				}
				yield(k.Key, m)
			}
		})
	}
	blocks, err := s.Blocks(false, o.Since)
	if err != nil {
		return nil, err
	}
	count := map[[2]string]int{}
	for _, b := range blocks {
		if !b.Since.Before(o.Until) {
			continue
		}
		r.Blocks = append(r.Blocks, toBlock(b))
		count[[2]string{b.KeyType, b.Key}]++
	}
	for k, n := range count {
		if n > 1 {
			r.Repeat = append(r.Repeat, Repeat{KeyType: k[0], Key: k[1], Blocks: n})
		}
	}
	sort.Slice(r.Repeat, func(i, j int) bool {
		if r.Repeat[i].Blocks != r.Repeat[j].Blocks {
			return r.Repeat[i].Blocks > r.Repeat[j].Blocks
		}
		return r.Repeat[i].Key < r.Repeat[j].Key
	})
	return r, nil
}

// family is the stats of one family of key types, on their way to the
// goroutine that adds them up.
type family struct {
	batch      []state.Stat
	work, free chan []state.Stat
}

const familyBatch = 4096

func (f *family) send() {
	if len(f.batch) == 0 {
		return
	}
	f.work <- f.batch
	select {
	case f.batch = <-f.free:
	default:
		f.batch = make([]state.Stat, 0, familyBatch)
	}
}

// derivedType is the key type a stored key type counts for too.
var derivedType = map[string]string{"sender": "sender_domain", "client_ip": "client_net"}

// derived is the key a stored key counts for too (derivedType): a
// sender's domain, an address's network (bits4 or bits6 long).
func derived(typ, key string, bits4, bits6 int) (string, bool) {
	switch typ {
	case "sender":
		if at := strings.LastIndexByte(key, '@'); at >= 0 && at+1 < len(key) {
			return key[at+1:], true
		}
	case "client_ip":
		if a, err := netip.ParseAddr(key); err == nil {
			bits := bits4
			if a.Is6() {
				bits = bits6
			}
			if p, err := a.Prefix(bits); err == nil {
				return p.String(), true
			}
		}
	}
	return "", false
}

// whatIf slides the candidate's window over each key's minutes.
func whatIf(w *WhatIf, keys func(func(string, map[int64]int64))) *WhatIfResult {
	res := &WhatIfResult{Rule: fmt.Sprintf("%s %d/%s", w.KeyType, w.Limit, w.Per), Keys: []TopEntry{}}
	span := int64(w.Per / time.Minute)
	keys(func(key string, m map[int64]int64) {
		minutes := slices.Sorted(maps.Keys(m))
		var best, sum int64
		lo := 0
		for _, minute := range minutes {
			sum += m[minute]
			for minutes[lo] <= minute-span {
				sum -= m[minutes[lo]]
				lo++
			}
			best = max(best, sum)
		}
		if best > w.Limit {
			res.Keys = append(res.Keys, TopEntry{Key: key, Messages: best})
		}
	})
	sort.Slice(res.Keys, func(i, j int) bool {
		if res.Keys[i].Messages != res.Keys[j].Messages {
			return res.Keys[i].Messages > res.Keys[j].Messages
		}
		return res.Keys[i].Key < res.Keys[j].Key
	})
	return res
}

func toBlock(b state.Block) Block {
	out := Block{Event: "block", Rule: b.Rule, KeyType: b.KeyType, Key: b.Key, Time: b.Since.UTC(), Value: b.Value, Limit: b.Limit,
		Window: b.Window.String(), Reason: b.EndReason, Status: b.Actions, File: b.File, Line: b.Line, Members: b.Members, Host: b.Host,
		Actions: slices.Sorted(maps.Keys(b.Actions)), Executed: true}
	if out.Status == nil {
		out.Status = map[string]string{}
	}
	if out.Actions == nil {
		out.Actions = []string{}
	}
	for _, s := range b.Actions {
		if s == state.DryRun {
			out.Executed = false
		}
	}
	if !b.Until.IsZero() {
		u := b.Until.UTC()
		out.Until = &u
	}
	if !b.Ended.IsZero() {
		e := b.Ended.UTC()
		out.Ended = &e
	}
	return out
}

// centiles summarises values given as how many times each came.
func centiles(count map[int64]int64) Centile {
	var n int64
	for _, c := range count {
		n += c
	}
	if n == 0 {
		return Centile{}
	}
	values := slices.Sorted(maps.Keys(count))
	at := func(p float64) int64 {
		i := min(n-1, int64(p*float64(n))) // the i-th value, sorted
		for _, v := range values {
			if i < count[v] {
				return v
			}
			i -= count[v]
		}
		return values[len(values)-1]
	}
	return Centile{P50: at(0.5), P99: at(0.99), Max: values[len(values)-1]}
}

func share(n, of int64) float64 {
	if of == 0 {
		return 0
	}
	return float64(int(float64(n)/float64(of)*10000)) / 10000
}

// maxReportKeys bounds the keys of one type a report holds at once: an
// attacker who sends from ten million senders must not make the nightly
// report take gigabytes.
const maxReportKeys = 100_000

// tally adds up the traffic of the keys of one type, within bounded
// memory: past max keys, the half with the least messages is let go (see
// Advice.Dropped).
type tally struct {
	max       int
	perMinute bool // keep each key's per-minute counts (--what-if)
	index     map[string]int32
	keys      []keyTally
	dropped   int
	floor     int64 // the most messages a key let go had
	// minute and hour count the keys let go by their busiest minute and
	// hour: a few distinct values, however many keys.
	minute, hour map[int64]int64
	distinct     hll     // every key seen: how many there were, once some are let go
	counts       []int64 // prune's, kept for the next
}

type keyTally struct {
	TopEntry
	// The busiest minute and clock hour so far, and the minute and hour
	// being added up: a store hands a batch's stats on in minute order
	// (see state.Stats), so a key's minutes come in order. A
	// minute older than the one being added up (stats saved before they
	// were ordered, or logs merged out of order) is added to it.
	// Minutes and hours since 1970, and counts of a key's minute or
	// hour, fit 32 bits: a key costs less, and a report holds 100,000 of
	// each type.
	minute, minuteN, bestMinute int32
	hour, hourN, bestHour       int32
	// minutes are its per-minute counts, for --what-if's key type only.
	minutes *[]minuteCount
	// derived is the key it counts for too (see derived), once made;
	// noDerived when it has none.
	derived string
}

const noDerived = "\x00"

type minuteCount struct{ minute, n int64 }

func newTally(max int, perMinute bool) *tally {
	return &tally{max: max, perMinute: perMinute, index: map[string]int32{}, minute: map[int64]int64{}, hour: map[int64]int64{}}
}

func (t *tally) add(key string, st *state.Stat) *keyTally {
	i, ok := t.index[key]
	if !ok {
		t.distinct.add(key)
		if len(t.keys) >= t.max {
			t.prune()
		}
		i = int32(len(t.keys))
		if len(t.keys) == cap(t.keys) {
			// Doubled at once: append grows a large slice by a quarter,
			// copying it again and again on the way to max.
			t.keys = slices.Grow(t.keys, min(max(len(t.keys), 256), t.max-len(t.keys)))
		}
		t.keys = append(t.keys, keyTally{TopEntry: TopEntry{Key: key}, minute: int32(st.Minute), hour: int32(st.Minute / 60)})
		t.index[key] = i
	}
	k := &t.keys[i]
	k.Messages += st.Messages
	k.Bytes += st.Bytes
	k.Recipients += st.Recipients
	if m := int32(st.Minute); m > k.minute {
		k.bestMinute = max(k.bestMinute, k.minuteN)
		k.minute, k.minuteN = m, 0
	}
	k.minuteN += int32(st.Messages)
	if h := int32(st.Minute / 60); h > k.hour {
		k.bestHour = max(k.bestHour, k.hourN)
		k.hour, k.hourN = h, 0
	}
	k.hourN += int32(st.Messages)
	if t.perMinute {
		if k.minutes == nil {
			k.minutes = new([]minuteCount)
		}
		ms := k.minutes
		if n := len(*ms); n > 0 && (*ms)[n-1].minute == st.Minute {
			(*ms)[n-1].n += st.Messages
		} else {
			*ms = append(*ms, minuteCount{st.Minute, st.Messages})
		}
	}
	return k
}

// prune lets go of the half of the keys with the least messages.
func (t *tally) prune() {
	if cap(t.counts) < len(t.keys) {
		t.counts = make([]int64, len(t.keys))
	}
	counts := t.counts[:len(t.keys)]
	for i := range t.keys {
		counts[i] = t.keys[i].Messages
	}
	// Keys with as many messages as the median go with it: at least half
	// goes, all of them when they all count the same (one message each).
	cut := nth(counts, len(counts)/2)
	kept := t.keys[:0]
	for _, k := range t.keys {
		if k.Messages > cut {
			kept = append(kept, k)
			continue
		}
		m, h := k.bests()
		t.minute[m]++
		t.hour[h]++
		t.floor = max(t.floor, k.Messages)
		t.dropped++
	}
	clear(t.keys[len(kept):])
	t.keys = kept
	clear(t.index)
	for i := range t.keys {
		t.index[t.keys[i].Key] = int32(i)
	}
}

// nth returns the value that would be at index n of a sorted, in time
// proportional to len(a) (Hoare's selection), reordering a: a report of
// ten million senders prunes two hundred times, and sorting each time
// cost more than the pruning.
func nth(a []int64, n int) int64 {
	lo, hi := 0, len(a)-1
	for lo < hi {
		// The median of three as the pivot: sorted or equal runs, which
		// counts of one message each are, stay linear.
		mid := lo + (hi-lo)/2
		if a[mid] < a[lo] {
			a[mid], a[lo] = a[lo], a[mid]
		}
		if a[hi] < a[lo] {
			a[hi], a[lo] = a[lo], a[hi]
		}
		if a[hi] < a[mid] {
			a[hi], a[mid] = a[mid], a[hi]
		}
		pivot := a[mid]
		i, j := lo, hi
		for i <= j {
			for a[i] < pivot {
				i++
			}
			for a[j] > pivot {
				j--
			}
			if i <= j {
				a[i], a[j] = a[j], a[i]
				i++
				j--
			}
		}
		switch {
		case n <= j:
			hi = j
		case n >= i:
			lo = i
		default:
			return a[n]
		}
	}
	return a[n]
}

// bests is a key's busiest minute and clock hour.
func (k *keyTally) bests() (minute, hour int64) {
	return int64(max(k.bestMinute, k.minuteN)), int64(max(k.bestHour, k.hourN))
}

// bests are how many keys, kept or let go, had each busiest minute and
// hour.
func (t *tally) bests() (minutes, hours map[int64]int64) {
	minutes, hours = maps.Clone(t.minute), maps.Clone(t.hour)
	for i := range t.keys {
		m, h := t.keys[i].bests()
		minutes[m]++
		hours[h]++
	}
	return minutes, hours
}

// seen is how many keys were counted: exactly while none was let go,
// else as HyperLogLog estimates it (within about 1%): a key let go and
// seen again is one key.
func (t *tally) seen() int {
	if t.dropped == 0 {
		return len(t.keys)
	}
	return int(t.distinct.estimate())
}

// hll is a HyperLogLog counter of distinct strings, with 2^14 registers
// (16 KiB; a standard error of 0.8%), made on first use. Its hash is
// fixed, so that a report says the same twice.
type hll struct{ reg []uint8 }

const hllBits = 14

func (h *hll) add(s string) {
	if h.reg == nil {
		h.reg = make([]uint8, 1<<hllBits)
	}
	x := uint64(14695981039346656037) // FNV-1a, then mixed (murmur3's fmix64)
	for i := 0; i < len(s); i++ {
		x = (x ^ uint64(s[i])) * 1099511628211
	}
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	i := x >> (64 - hllBits)
	rank := uint8(bits.LeadingZeros64(x<<hllBits|1<<(hllBits-1)) + 1)
	h.reg[i] = max(h.reg[i], rank)
}

func (h *hll) estimate() float64 {
	if h.reg == nil {
		return 0
	}
	m := float64(len(h.reg))
	var sum float64
	zeros := 0
	for _, r := range h.reg {
		sum += math.Ldexp(1, -int(r))
		if r == 0 {
			zeros++
		}
	}
	e := 0.7213 / (1 + 1.079/m) * m * m / sum
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(m/float64(zeros)) // few keys: linear counting
	}
	return math.Round(e)
}
