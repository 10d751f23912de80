package actions

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
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

// Setup creates the table, sets and chain, replacing an older one: at
// start, before the blocks in force are applied again.
func (n *NFT) Setup(ctx context.Context) error {
	var b strings.Builder
	fmt.Fprintf(&b, "add table %s\ndelete table %s\n", n.Table, n.Table)
	fmt.Fprintf(&b, "table %s {\n", n.Table)
	b.WriteString("\tset a4 { type ipv4_addr; flags timeout; }\n")
	b.WriteString("\tset a6 { type ipv6_addr; flags timeout; }\n")
	b.WriteString("\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n")
	for _, set := range []string{"ip saddr @a4", "ip6 saddr @a6"} {
		fmt.Fprintf(&b, "\t\t%s %s\n", set, n.match())
	}
	b.WriteString("\t}\n}\n")
	n.mu.Lock()
	n.sets = map[string]bool{}
	n.mu.Unlock()
	return n.run(ctx, b.String())
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
	family, typ, match := "4", "ipv4_addr", "ip"
	if p.Addr().Is6() {
		family, typ, match = "6", "ipv6_addr", "ip6"
	}
	set := fmt.Sprintf("n%s_%d", family, p.Bits())
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sets[set] {
		return set, nil
	}
	table := strings.Fields(n.Table)
	if runTool(ctx, nil, orDefault(n.Binary, "nft"), "list", "set", table[0], table[1], set) != nil {
		script := fmt.Sprintf("add set %s %s { type %s; flags interval, timeout; }\nadd rule %s input %s saddr @%s %s\n",
			n.Table, set, typ, n.Table, match, set, n.match())
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

// Ensure makes the table only when it is not there, keeping the elements
// of one that is: for `replay --act` next to a running daemon.
func (n *NFT) Ensure(ctx context.Context) error {
	table := strings.Fields(n.Table)
	if runTool(ctx, nil, orDefault(n.Binary, "nft"), "list", "table", table[0], table[1]) == nil {
		return nil
	}
	return n.Setup(ctx)
}

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
	p, err := n.Guard.Network(d.Key)
	if err != nil {
		return "", err
	}
	set, elem := "a4", p.Addr().String()
	switch {
	case !p.IsSingleIP():
		elem = p.String()
		if set, err = n.networkSet(ctx, p); err != nil {
			return "", err
		}
	case p.Addr().Is6():
		set = "a6"
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

func (n *NFT) run(ctx context.Context, script string) error {
	return runTool(ctx, strings.NewReader(script), orDefault(n.Binary, "nft"), "-f", "-")
}
