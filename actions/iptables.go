package actions

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// IPTables blocks client addresses and networks with ipset and one
// iptables (and one ip6tables) rule that drops the mail ports from the
// set's members: for hosts whose firewall is managed with iptables. The
// sets are hash:net with timeouts, so an element ends with its block even
// if bombwatch is down.
//
// Like NFT it runs the programs directly, with every argument on its own
// and every address parsed by Guard.Network first.
type IPTables struct {
	ActionName string
	Set        string // "bombwatch": the sets are bombwatch4 and bombwatch6
	Ports      []int
	Verdict    string // drop or reject
	Guard      *Guard
	DryRunOnly bool
	Retries
	Logger *slog.Logger
}

func (t *IPTables) Name() string   { return t.ActionName }
func (t *IPTables) External() bool { return true }
func (t *IPTables) Enforces() bool { return true }
func (t *IPTables) DryRun() bool   { return t.DryRunOnly }

// family pairs a set with its iptables program.
type family struct {
	set, iptables, inet string
}

func (t *IPTables) families() []family {
	return []family{{t.Set + "4", "iptables", "inet"}, {t.Set + "6", "ip6tables", "inet6"}}
}

func (t *IPTables) rule(f family) []string {
	ports := make([]string, len(t.Ports))
	for i, p := range t.Ports {
		ports[i] = strconv.Itoa(p)
	}
	target := []string{"-j", "DROP"}
	if t.Verdict == "reject" {
		target = []string{"-j", "REJECT", "--reject-with", "tcp-reset"}
	}
	return append([]string{"INPUT", "-p", "tcp", "-m", "multiport", "--dports", strings.Join(ports, ","),
		"-m", "set", "--match-set", f.set, "src"}, target...)
}

// Setup makes the sets and the rules, when they are not there yet.
func (t *IPTables) Setup(ctx context.Context) error {
	for _, f := range t.families() {
		if err := run(ctx, "ipset", "create", f.set, "hash:net", "family", f.inet, "timeout", "0", "-exist"); err != nil {
			return err
		}
		rule := t.rule(f)
		if run(ctx, f.iptables, append([]string{"-C"}, rule...)...) != nil {
			if err := run(ctx, f.iptables, append([]string{"-I"}, rule...)...); err != nil {
				return err
			}
		}
	}
	return nil
}

// Ensure is Setup, which keeps what is there already.
func (t *IPTables) Ensure(ctx context.Context) error { return t.Setup(ctx) }

// Cleanup removes the rules and the sets.
func (t *IPTables) Cleanup(ctx context.Context) error {
	var first error
	for _, f := range t.families() {
		for run(ctx, f.iptables, append([]string{"-D"}, t.rule(f)...)...) == nil {
		}
		if err := run(ctx, "ipset", "destroy", f.set); err != nil && !strings.Contains(err.Error(), "does not exist") {
			first = err
		}
	}
	return first
}

func (t *IPTables) Run(ctx context.Context, d Detection) error {
	p, err := t.Guard.Network(d.Key)
	if err != nil {
		return err
	}
	set := t.Set + "4"
	if p.Addr().Is6() {
		set = t.Set + "6"
	}
	if d.Event == "unblock" {
		return run(ctx, "ipset", "del", set, p.String(), "-exist")
	}
	timeout := int64(0) // no end
	if !d.Until.IsZero() {
		left := d.Until.Sub(d.Now)
		if left <= 0 {
			return nil
		}
		timeout = int64((left + time.Second - 1) / time.Second)
	}
	// -exist: a new block of a key replaces the old one's timeout.
	return run(ctx, "ipset", "add", set, p.String(), "timeout", strconv.FormatInt(timeout, 10), "-exist")
}

// Reconcile makes the sets hold exactly the targets of want: what is
// there stays, what is missing (a reboot empties ipsets) is added for the
// time its block has left, what no block holds is removed.
func (t *IPTables) Reconcile(ctx context.Context, want []Detection) error {
	have := map[netip.Prefix]string{} // → its set
	for _, f := range t.families() {
		out, err := toolOutput(ctx, "ipset", "save", f.set)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(out), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 3 || fields[0] != "add" {
				continue
			}
			p, err := netip.ParsePrefix(fields[2])
			if err != nil {
				a, aerr := netip.ParseAddr(fields[2])
				if aerr != nil {
					continue
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			have[p.Masked()] = f.set
		}
	}
	keep := map[netip.Prefix]bool{}
	for _, d := range want {
		p, err := t.Guard.Network(d.Key)
		if err != nil {
			continue
		}
		keep[p] = true
		if _, ok := have[p]; ok {
			continue
		}
		if err := t.Run(ctx, d); err != nil {
			return err
		}
	}
	for p, set := range have {
		if !keep[p] {
			if err := run(ctx, "ipset", "del", set, p.String(), "-exist"); err != nil {
				return err
			}
		}
	}
	return nil
}

// toolOutput runs a tool like runTool and returns what it wrote.
func toolOutput(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.Bytes(), nil
}

func run(ctx context.Context, name string, args ...string) error {
	return runTool(ctx, nil, name, args...)
}

// runTool runs a firewall tool with its arguments one by one — never a
// shell — and stdin if given, and says what it said when it fails.
func runTool(ctx context.Context, stdin io.Reader, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}
