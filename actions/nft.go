package actions

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// NFT blocks client addresses and networks in bombwatch's own nftables
// table: sets whose elements time out with the block — a4 and a6 for
// addresses, and for networks one interval set per prefix length, n4_24,
// n6_48 and so on, made with its rule when first needed — and a chain that
// drops (or rejects) the mail ports from their members. An interval set
// cannot hold two networks that overlap; networks of one length never
// do, so a /16 block next to a /24 one is enforced too.
//
// It runs `nft -f -` with the commands on standard input — no shell, and
// every address is written only after it parsed as one (Guard.Network).
// Each change is one nft transaction.
type NFT struct {
	ActionName string
	Table      string // "inet bombwatch"
	Ports      []int
	Verdict    string // drop or reject
	Guard      *Guard
	DryRunOnly bool
	Retries
	Logger *slog.Logger
	// Binary is the nft program (default "nft").
	Binary string

	mu   sync.Mutex
	sets map[string]bool // network sets known to exist
}

func (n *NFT) Name() string   { return n.ActionName }
func (n *NFT) External() bool { return true }
func (n *NFT) Enforces() bool { return true }
func (n *NFT) DryRun() bool   { return n.DryRunOnly }

// Setup creates the table, sets and chain when they are not there, and
// keeps their elements when they are: the blocks in force survive a
// restart and a reload. A chain whose rules were written for other ports
// or another verdict is written again.
func (n *NFT) Setup(ctx context.Context) error {
	n.mu.Lock()
	n.sets = map[string]bool{}
	n.mu.Unlock()
	t, err := n.list(ctx)
	if err != nil {
		return err
	}
	var b strings.Builder
	if !t.exists {
		fmt.Fprintf(&b, "table %s {\n", n.Table)
		b.WriteString("\tset a4 { type ipv4_addr; flags timeout; }\n")
		b.WriteString("\tset a6 { type ipv6_addr; flags timeout; }\n")
		b.WriteString("\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n\t}\n}\n")
	}
	current := t.exists && len(t.comments) > 0
	for _, c := range t.comments {
		current = current && c == n.match()
	}
	if !current {
		fmt.Fprintf(&b, "flush chain %s input\n", n.Table)
		sets := []string{"a4", "a6"}
		for set := range t.elems {
			if strings.HasPrefix(set, "n") {
				sets = append(sets, set)
			}
		}
		slices.Sort(sets[2:])
		for _, set := range sets {
			fmt.Fprintf(&b, "add rule %s input %s\n", n.Table, n.rule(set))
		}
	}
	if b.Len() == 0 {
		return nil
	}
	return n.run(ctx, b.String())
}

// rule matches the members of a set on the mail ports; its comment says
// which ports and verdict, so that Setup knows a chain written for others.
func (n *NFT) rule(set string) string {
	match := "ip"
	if strings.HasPrefix(set, "a6") || strings.HasPrefix(set, "n6") {
		match = "ip6"
	}
	return fmt.Sprintf("%s saddr @%s %s comment %q", match, set, n.match(), n.match())
}

// nftTable is what bombwatch's table holds.
type nftTable struct {
	exists   bool
	elems    map[string]map[string]bool // set → elements, as "addr" or "addr/len"
	comments []string                   // of the chain's rules
}

// list reads bombwatch's table from `nft -j list table`.
func (n *NFT) list(ctx context.Context) (nftTable, error) {
	t := nftTable{elems: map[string]map[string]bool{}}
	table := strings.Fields(n.Table)
	out, err := toolOutput(ctx, orDefault(n.Binary, "nft"), "-j", "list", "table", table[0], table[1])
	if err != nil {
		if strings.Contains(err.Error(), "No such file or directory") {
			return t, nil // no table yet
		}
		return t, err
	}
	var doc struct {
		Nftables []struct {
			Table *struct{} `json:"table"`
			Set   *struct {
				Name string            `json:"name"`
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
			Rule *struct {
				Comment string `json:"comment"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return t, fmt.Errorf("nft -j list table %s: %w", n.Table, err)
	}
	for _, o := range doc.Nftables {
		switch {
		case o.Table != nil:
			t.exists = true
		case o.Set != nil:
			elems := map[string]bool{}
			for _, raw := range o.Set.Elem {
				if e := nftElem(raw); e != "" {
					elems[e] = true
				}
			}
			t.elems[o.Set.Name] = elems
		case o.Rule != nil:
			t.comments = append(t.comments, o.Rule.Comment)
		}
	}
	return t, nil
}

// nftElem reads one set element of nft's JSON: "192.0.2.1",
// {"prefix": {"addr": "10.0.0.0", "len": 24}}, or either inside
// {"elem": {"val": …, "timeout": …}}.
func nftElem(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		Prefix *struct {
			Addr string `json:"addr"`
			Len  int    `json:"len"`
		} `json:"prefix"`
		Elem *struct {
			Val json.RawMessage `json:"val"`
		} `json:"elem"`
	}
	if json.Unmarshal(raw, &o) != nil {
		return ""
	}
	switch {
	case o.Prefix != nil:
		return fmt.Sprintf("%s/%d", o.Prefix.Addr, o.Prefix.Len)
	case o.Elem != nil:
		return nftElem(o.Elem.Val)
	}
	return ""
}

// Reconcile makes the sets hold exactly the targets of want, in one
// transaction: what is there stays as it is, what is missing is added for
// the time its block has left, and what no block holds is removed.
func (n *NFT) Reconcile(ctx context.Context, want []Detection) error {
	t, err := n.list(ctx)
	if err != nil {
		return err
	}
	var script strings.Builder
	keep := map[string]map[string]bool{}
	for _, d := range want {
		set, elem, err := n.element(ctx, d.Key)
		if err != nil {
			continue // refused by the Guard: never enforced
		}
		if keep[set] == nil {
			keep[set] = map[string]bool{}
		}
		keep[set][elem] = true
		if t.elems[set][elem] {
			continue
		}
		cmds, err := n.commands(ctx, d)
		if err != nil {
			return err
		}
		script.WriteString(cmds)
	}
	for _, set := range slices.Sorted(maps.Keys(t.elems)) {
		for _, elem := range slices.Sorted(maps.Keys(t.elems[set])) {
			if !keep[set][elem] {
				fmt.Fprintf(&script, "delete element %s %s { %s }\n", n.Table, set, elem)
			}
		}
	}
	if script.Len() == 0 {
		return nil
	}
	return n.run(ctx, script.String())
}

// match is the end of a rule: the mail ports and the verdict.
func (n *NFT) match() string {
	ports := make([]string, len(n.Ports))
	for i, p := range n.Ports {
		ports[i] = strconv.Itoa(p)
	}
	verdict := "drop"
	if n.Verdict == "reject" {
		verdict = "reject with tcp reset"
	}
	return fmt.Sprintf("tcp dport { %s } %s", strings.Join(ports, ", "), verdict)
}

// networkSet makes the interval set of a prefix length, and its rule,
// unless it exists: "n4_24" for IPv4 /24 networks.
func (n *NFT) networkSet(ctx context.Context, p netip.Prefix) (string, error) {
	family, typ := "4", "ipv4_addr"
	if p.Addr().Is6() {
		family, typ = "6", "ipv6_addr"
	}
	set := fmt.Sprintf("n%s_%d", family, p.Bits())
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sets[set] {
		return set, nil
	}
	table := strings.Fields(n.Table)
	if runTool(ctx, nil, orDefault(n.Binary, "nft"), "list", "set", table[0], table[1], set) != nil {
		script := fmt.Sprintf("add set %s %s { type %s; flags interval, timeout; }\nadd rule %s input %s\n",
			n.Table, set, typ, n.Table, n.rule(set))
		if err := n.run(ctx, script); err != nil {
			return "", err
		}
	}
	if n.sets == nil {
		n.sets = map[string]bool{}
	}
	n.sets[set] = true
	return set, nil
}

// Ensure is Setup, which keeps what is there: for `replay --act` next to
// a running daemon.
func (n *NFT) Ensure(ctx context.Context) error { return n.Setup(ctx) }

// Cleanup removes the table.
func (n *NFT) Cleanup(ctx context.Context) error {
	return n.run(ctx, fmt.Sprintf("add table %s\ndelete table %s\n", n.Table, n.Table))
}

// Run adds the key to its set for the rest of the block, or removes it.
func (n *NFT) Run(ctx context.Context, d Detection) error {
	cmds, err := n.commands(ctx, d)
	if err != nil || cmds == "" {
		return err
	}
	err = n.run(ctx, cmds)
	if err != nil && d.Event == "unblock" && strings.Contains(err.Error(), "No such file or directory") {
		return nil // it timed out already
	}
	return err
}

// RunBatch applies several blocks in one nft transaction. A transaction
// fails whole, so when it does — an unblock of an element that timed out
// already, say — each detection is applied on its own to say which.
func (n *NFT) RunBatch(ctx context.Context, ds []Detection) []error {
	errs := make([]error, len(ds))
	var script strings.Builder
	for i, d := range ds {
		cmds, err := n.commands(ctx, d)
		errs[i] = err
		script.WriteString(cmds)
	}
	if script.Len() == 0 || n.run(ctx, script.String()) == nil {
		return errs
	}
	for i, d := range ds {
		if errs[i] == nil {
			errs[i] = n.Run(ctx, d)
		}
	}
	return errs
}

// commands is the nft script that applies d; "" when there is nothing to
// do (a block over before it was applied).
func (n *NFT) commands(ctx context.Context, d Detection) (string, error) {
	set, elem, err := n.element(ctx, d.Key)
	if err != nil {
		return "", err
	}
	if d.Event == "unblock" {
		return fmt.Sprintf("delete element %s %s { %s }\n", n.Table, set, elem), nil
	}
	timeout := ""
	if !d.Until.IsZero() {
		left := d.Until.Sub(d.Now)
		if left <= 0 {
			return "", nil // over before it was applied
		}
		timeout = fmt.Sprintf(" timeout %ds", int64((left+time.Second-1)/time.Second))
	}
	// delete first (ignored when absent): a new block replaces an old timeout.
	return fmt.Sprintf("add element %s %s { %s }\ndelete element %s %s { %s }\nadd element %s %s { %s%s }\n",
		n.Table, set, elem, n.Table, set, elem, n.Table, set, elem, timeout), nil
}

// element is the set and element that hold a key, the set made if need be.
func (n *NFT) element(ctx context.Context, key string) (set, elem string, err error) {
	p, err := n.Guard.Network(key)
	if err != nil {
		return "", "", err
	}
	set, elem = "a4", p.Addr().String()
	switch {
	case !p.IsSingleIP():
		elem = p.String()
		if set, err = n.networkSet(ctx, p); err != nil {
			return "", "", err
		}
	case p.Addr().Is6():
		set = "a6"
	}
	return set, elem, nil
}

func (n *NFT) run(ctx context.Context, script string) error {
	return runTool(ctx, strings.NewReader(script), orDefault(n.Binary, "nft"), "-f", "-")
}
