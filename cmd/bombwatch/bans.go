package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bombwatch/bombwatch/actions"
	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/state"
)

// banJSON is a block as `bans list --json` shows it.
type banJSON struct {
	Rule    string            `json:"rule"`
	KeyType string            `json:"key_type"`
	Key     string            `json:"key"`
	Since   time.Time         `json:"since"`
	Until   *time.Time        `json:"until,omitempty"`
	Actions map[string]string `json:"actions"`
	// Additions: the block's ID, and its value and limit.
	ID    int64   `json:"id"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	// Members are the client addresses enforced for a rule that enforces
	// on clients.
	Members []string `json:"members,omitempty"`
	// Evidence are the events the rule counted (file, line, time; at
	// most the limit+1), kept with the block; absent for a ban by hand.
	Evidence []state.Evidence `json:"evidence,omitempty"`
	// Host is where the event that crossed the limit was seen.
	Host string `json:"host,omitempty"`
}

func toBanJSON(b state.Block) banJSON {
	j := banJSON{Rule: b.Rule, KeyType: b.KeyType, Key: b.Key, Since: b.Since.UTC(), Actions: b.Actions, ID: b.ID, Value: b.Value, Limit: b.Limit, Members: b.Members, Evidence: b.Evidence, Host: b.Host}
	if j.Actions == nil {
		j.Actions = map[string]string{}
	}
	if !b.Until.IsZero() {
		u := b.Until.UTC()
		j.Until = &u
	}
	return j
}

func runBans(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bans", stderr, "list|ban KEY [--for DUR] [--rule NAME] [--type T]|unban KEY [-c FILE] [--db FILE] [--json]")
	cfgPath := fs.String("c", "", "config `file` (default: the built-in config)")
	dbPath := fs.String("db", "", "state database `file` (default: the config's state)")
	asJSON := fs.Bool("json", false, "print JSON")
	forDur := fs.String("for", "", "with ban: how long (`duration`; default: no end)")
	ruleName := fs.String("rule", "manual", "with ban: the rule `name` the block is recorded under")
	keyType := fs.String("type", "", "with ban: the key's `type` (client_ip, client_net, sender, sender_domain, sasl_user, uid; default: told from the key)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return usagef("say list, ban KEY or unban KEY")
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	db := *dbPath
	if db == "" {
		db = cfg.State
	}
	if rest[0] == "list" {
		if len(rest) != 1 {
			return usagef("list takes no argument")
		}
		store, err := state.Open(db, state.OpenOptions{ReadOnly: true, Host: cfg.Host})
		if err != nil {
			return err
		}
		defer store.Close()
		blocks, err := store.Blocks(true, time.Time{})
		if err != nil {
			return err
		}
		return printBans(stdout, blocks, *asJSON)
	}
	if rest[0] != "ban" && rest[0] != "unban" {
		return usagef("unknown %q: say list, ban KEY or unban KEY", rest[0])
	}
	store, err := state.Open(db, state.OpenOptions{Host: cfg.Host})
	if err != nil {
		return err
	}
	defer store.Close()
	switch rest[0] {
	case "ban":
		if len(rest) != 2 {
			return usagef("ban takes one KEY: an address, a network, a sender or a domain")
		}
		var d time.Duration
		if *forDur != "" {
			if d, err = config.ParseDuration(*forDur); err != nil || d <= 0 {
				return usagef("--for: %q is not a duration", *forDur)
			}
		}
		b, err := ban(cfg, store, rest[1], *keyType, *ruleName, d, stderr)
		if b.ID != 0 {
			printBans(stdout, []state.Block{b}, *asJSON)
		}
		return err
	case "unban":
		if len(rest) != 2 {
			return usagef("unban takes one KEY")
		}
		ended, err := unban(cfg, store, rest[1], stderr)
		if len(ended) > 0 {
			printBans(stdout, ended, *asJSON)
		}
		if err == nil && len(ended) == 0 {
			err = fmt.Errorf("no block of %q is in force", rest[1])
		}
		return err
	}
	return nil
}

func printBans(w io.Writer, blocks []state.Block, asJSON bool) error {
	if asJSON {
		out := make([]banJSON, 0, len(blocks))
		for _, b := range blocks {
			out = append(out, toBanJSON(b))
		}
		js, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(js))
		return err
	}
	for _, b := range blocks {
		until := "no end"
		if !b.Until.IsZero() {
			until = b.Until.UTC().Format(time.RFC3339)
		}
		var acts []string
		for _, n := range slices.Sorted(maps.Keys(b.Actions)) {
			acts = append(acts, n+"="+b.Actions[n])
		}
		fmt.Fprintf(w, "%-16s %-13s %-40s since %s until %s  %s\n", b.Rule, b.KeyType, safeText(b.Key),
			b.Since.UTC().Format(time.RFC3339), until, strings.Join(acts, " "))
		if len(b.Members) > 0 {
			fmt.Fprintf(w, "%-16s enforced on %s\n", "", strings.Join(b.Members, " "))
		}
	}
	return nil
}

// typeKey tells what a key given by hand is, or checks it against the
// type given with --type, and writes it as the rules key it: an address
// in its canonical form, a network masked, a sender's domain lower-cased,
// "@domain" as the domain. A key that is none of them is an error, never
// a guess: "1.2.3.4/33" is no sender domain.
func typeKey(key, keyType string) (string, string, error) {
	if keyType == "" {
		switch {
		case strings.Contains(key, "/"):
			keyType = "client_net"
		case strings.HasPrefix(key, "@"):
			keyType = "sender_domain"
		case strings.Contains(key, "@"):
			keyType = "sender"
		default:
			if _, err := netip.ParseAddr(key); err == nil {
				keyType = "client_ip"
			} else {
				keyType = "sender_domain"
			}
		}
	}
	switch keyType {
	case "client_ip":
		a, err := netip.ParseAddr(key)
		if err != nil || a.Zone() != "" {
			return "", "", fmt.Errorf("%q is not an IP address", key)
		}
		return keyType, a.Unmap().String(), nil
	case "client_net":
		p, err := netip.ParsePrefix(key)
		if err != nil {
			return "", "", fmt.Errorf("%q is not a network (address/length, such as 192.0.2.0/24)", key)
		}
		return keyType, p.Masked().String(), nil
	case "sender":
		at := strings.LastIndexByte(key, '@')
		if at <= 0 || !validDomain(key[at+1:]) {
			return "", "", fmt.Errorf("%q is not a sender address (local@domain)", key)
		}
		return keyType, key[:at+1] + strings.ToLower(key[at+1:]), nil
	case "sender_domain":
		d := strings.ToLower(strings.TrimPrefix(key, "@"))
		if !validDomain(d) {
			return "", "", fmt.Errorf("%q is not an address, a network, a sender or a domain (a SASL user or uid needs --type)", key)
		}
		return keyType, d, nil
	case "sasl_user":
		if key == "" {
			return "", "", fmt.Errorf("an empty SASL user")
		}
		return keyType, key, nil
	case "uid":
		if n, err := strconv.ParseUint(key, 10, 32); err != nil || n > 1<<31 {
			return "", "", fmt.Errorf("%q is not a uid", key)
		}
		return keyType, key, nil
	}
	return "", "", fmt.Errorf("--type %q: one of client_ip, client_net, sender, sender_domain, sasl_user, uid", keyType)
}

// validDomain reports whether d is a domain name: dot-separated labels of
// letters, digits, '-' and '_', at least two of them.
func validDomain(d string) bool {
	labels := strings.Split(d, ".")
	if len(d) > 253 || len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range []byte(l) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// enforcing are the config's actions that enforce a key type by hand: the
// firewall and the maps, and the log.
func enforcing(cfg *config.Config, keyType string, stderr io.Writer) ([]actions.Action, error) {
	all, err := config.BuildActions(cfg, newLogger(stderr, true))
	if err != nil {
		return nil, err
	}
	out := []actions.Action{all["log"]}
	for _, name := range slices.Sorted(maps.Keys(cfg.Actions)) {
		if keys, ok := config.ActionKeys[cfg.Actions[name].Type]; ok && slices.Contains(keys, keyType) {
			out = append(out, all[name])
		}
	}
	return out, nil
}

// apply runs actions for a detection now, once each (a person is waiting:
// no retries), and returns their outcomes and what failed, one line each.
func apply(d actions.Detection, acts []actions.Action) (map[string]string, []string) {
	status := map[string]string{}
	var failed []string
	for _, a := range acts {
		if actions.IsDryRun(a) {
			status[a.Name()] = state.DryRun
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var err error
		if s, ok := a.(actions.Setupper); ok && d.Event == "block" {
			// The firewall table, made if bombwatch never ran here yet;
			// kept as it is otherwise.
			err = s.Setup(ctx)
		}
		if err == nil {
			err = a.Run(ctx, d)
		}
		cancel()
		if err != nil {
			status[a.Name()] = state.Failed
			failed = append(failed, a.Name()+": "+firstLine(err.Error()))
			continue
		}
		status[a.Name()] = state.Applied
	}
	return status, failed
}

// firstLine is the first line of a program's error, bounded.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// ban blocks key by hand: the block is saved whatever its actions did —
// a running daemon, or the next start, applies what failed again — and an
// action that failed is the error returned.
func ban(cfg *config.Config, store state.Store, key, keyType, rule string, d time.Duration, stderr io.Writer) (state.Block, error) {
	keyType, key, err := typeKey(key, keyType)
	if err != nil {
		return state.Block{}, usageError{err}
	}
	guard := actions.NewGuard(cfg.Ignore)
	switch keyType {
	case "client_ip", "client_net":
		_, err = guard.Network(key)
	case "sasl_user":
		err = guard.User(key)
	case "uid":
	default:
		err = guard.Sender(keyType, key)
	}
	if err != nil {
		return state.Block{}, usageError{err}
	}
	acts, err := enforcing(cfg, keyType, stderr)
	if err != nil {
		return state.Block{}, err
	}
	id, err := store.ReserveIDs(1)
	if err != nil {
		return state.Block{}, err
	}
	now := time.Now().UTC()
	b := state.Block{ID: id, Rule: rule, KeyType: keyType, Key: key, Since: now, Actions: map[string]string{}, Host: cfg.HostName()}
	if d > 0 {
		b.Until = now.Add(d)
	}
	det := actions.Detection{Event: "block", Time: now, Now: now, BlockID: b.ID, Rule: rule, KeyType: keyType, Key: key, Until: b.Until}
	var failed []string
	b.Actions, failed = apply(det, acts)
	if err := store.Commit(&state.Batch{Blocks: []state.Block{b}, Manual: true}); err != nil {
		return b, err
	}
	if len(failed) > 0 {
		return b, fmt.Errorf("block %d of %s saved, but not enforced: %s", b.ID, key, strings.Join(failed, "; "))
	}
	return b, nil
}

func unban(cfg *config.Config, store state.Store, key string, stderr io.Writer) ([]state.Block, error) {
	if _, k, err := typeKey(key, ""); err == nil {
		key = k // as it was saved
	}
	blocks, err := store.Blocks(true, time.Time{})
	if err != nil {
		return nil, err
	}
	all, err := config.BuildActions(cfg, newLogger(stderr, true))
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	var ended []state.Block
	var problems []string
	batch := &state.Batch{Manual: true}
	for _, b := range blocks {
		if b.Key != key {
			continue
		}
		var acts []actions.Action
		for _, name := range slices.Sorted(maps.Keys(b.Actions)) {
			if a, ok := all[name]; ok {
				acts = append(acts, a)
			}
		}
		_, failed := apply(actions.Detection{Event: "unblock", Time: now, Now: now, BlockID: b.ID, Rule: b.Rule, KeyType: b.KeyType, Key: b.Key,
			Value: b.Value, Limit: b.Limit, Window: b.Window, Until: b.Until, Reason: "unban"}, acts)
		problems = append(problems, failed...)
		batch.Ends = append(batch.Ends, state.End{ID: b.ID, Time: now, Reason: "unban"})
		b.Ended, b.EndReason = now, "unban"
		ended = append(ended, b)
	}
	if len(ended) > 0 {
		if err := store.Commit(batch); err != nil {
			return nil, err
		}
	}
	if len(problems) > 0 {
		return ended, fmt.Errorf("%s unbanned, but not everywhere: %s", key, strings.Join(problems, "; "))
	}
	return ended, nil
}
