package actions

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// NFT blocks client addresses and networks in bombwatch's own nftables
// table: sets whose elements time out with the block — a4 and a6 for
// addresses, n4 and n6 (interval sets) for networks — and a chain that
// drops (or rejects) the mail ports from their members. Two networks that
// overlap cannot both be in an interval set: the second block's nft action
// fails, and is recorded so.
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
}

func (n *NFT) Name() string   { return n.ActionName }
func (n *NFT) External() bool { return true }
func (n *NFT) Enforces() bool { return true }
func (n *NFT) DryRun() bool   { return n.DryRunOnly }

// Setup creates the table, sets and chain, replacing an older one: at
// start, before the blocks in force are applied again.
func (n *NFT) Setup(ctx context.Context) error {
	ports := make([]string, len(n.Ports))
	for i, p := range n.Ports {
		ports[i] = strconv.Itoa(p)
	}
	verdict := "drop"
	if n.Verdict == "reject" {
		verdict = "reject with tcp reset"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "add table %s\ndelete table %s\n", n.Table, n.Table)
	fmt.Fprintf(&b, "table %s {\n", n.Table)
	b.WriteString("\tset a4 { type ipv4_addr; flags timeout; }\n")
	b.WriteString("\tset a6 { type ipv6_addr; flags timeout; }\n")
	b.WriteString("\tset n4 { type ipv4_addr; flags interval, timeout; }\n")
	b.WriteString("\tset n6 { type ipv6_addr; flags interval, timeout; }\n")
	b.WriteString("\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n")
	for _, set := range []string{"ip saddr @a4", "ip saddr @n4", "ip6 saddr @a6", "ip6 saddr @n6"} {
		fmt.Fprintf(&b, "\t\t%s tcp dport { %s } %s\n", set, strings.Join(ports, ", "), verdict)
	}
	b.WriteString("\t}\n}\n")
	return n.run(ctx, b.String())
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
	p, err := n.Guard.Network(d.Key)
	if err != nil {
		return err
	}
	set, elem := "n", p.String()
	if p.IsSingleIP() {
		set, elem = "a", p.Addr().String()
	}
	if p.Addr().Is6() {
		set += "6"
	} else {
		set += "4"
	}
	if d.Event == "unblock" {
		err := n.run(ctx, fmt.Sprintf("delete element %s %s { %s }\n", n.Table, set, elem))
		if err != nil && strings.Contains(err.Error(), "No such file or directory") {
			return nil // it timed out already
		}
		return err
	}
	timeout := ""
	if !d.Until.IsZero() {
		left := d.Until.Sub(d.Now)
		if left <= 0 {
			return nil // over before it was applied
		}
		timeout = fmt.Sprintf(" timeout %ds", int64((left+time.Second-1)/time.Second))
	}
	// delete first (ignored when absent): a new block replaces an old timeout.
	cmds := fmt.Sprintf("add element %s %s { %s }\ndelete element %s %s { %s }\nadd element %s %s { %s%s }\n",
		n.Table, set, elem, n.Table, set, elem, n.Table, set, elem, timeout)
	return n.run(ctx, cmds)
}

func (n *NFT) run(ctx context.Context, script string) error {
	return runTool(ctx, strings.NewReader(script), orDefault(n.Binary, "nft"), "-f", "-")
}
