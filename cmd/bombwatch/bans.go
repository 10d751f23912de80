package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bombwatch/bombwatch/actions"
	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/sqlite"
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
}

func toBanJSON(b state.Block) banJSON {
	j := banJSON{Rule: b.Rule, KeyType: b.KeyType, Key: b.Key, Since: b.Since.UTC(), Actions: b.Actions, ID: b.ID, Value: b.Value, Limit: b.Limit, Members: b.Members}
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
	fs := newFlagSet("bans", stderr, "list|ban KEY [--for DUR] [--rule NAME]|unban KEY [-c FILE] [--db FILE] [--json]")
	cfgPath := fs.String("c", "", "config `file` (default: the built-in config)")
	dbPath := fs.String("db", "", "state database `file` (default: the config's state)")
	asJSON := fs.Bool("json", false, "print JSON")
	forDur := fs.String("for", "", "with ban: how long (`duration`; default: no end)")
	ruleName := fs.String("rule", "manual", "with ban: the rule `name` the block is recorded under")
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
	store, err := sqlite.Open(db)
	if err != nil {
		return err
	}
	defer store.Close()
	switch rest[0] {
	case "list":
		if len(rest) != 1 {
			return usagef("list takes no argument")
		}
		blocks, err := store.Blocks(true, time.Time{})
		if err != nil {
			return err
		}
		return printBans(stdout, blocks, *asJSON)
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
		b, err := ban(cfg, store, rest[1], *ruleName, d, stderr)
		if err != nil {
			return err
		}
		return printBans(stdout, []state.Block{b}, *asJSON)
	case "unban":
		if len(rest) != 2 {
			return usagef("unban takes one KEY")
		}
		ended, err := unban(cfg, store, rest[1], stderr)
		if err != nil {
			return err
		}
		if len(ended) == 0 {
			return fmt.Errorf("no block of %q is in force", rest[1])
		}
		return printBans(stdout, ended, *asJSON)
	}
	return usagef("unknown %q: say list, ban KEY or unban KEY", rest[0])
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

// keyTypeOf tells what a key given by hand is.
func keyTypeOf(key string) string {
	if _, err := netip.ParseAddr(key); err == nil {
		return "client_ip"
	}
	if _, err := netip.ParsePrefix(key); err == nil {
		return "client_net"
	}
	if strings.Contains(key, "@") {
		return "sender"
	}
	return "sender_domain"
}

// enforcing are the config's actions that enforce a key type by hand: the
// firewall and the maps, and the log.
func enforcing(cfg *config.Config, keyType string, stderr io.Writer) (map[string]actions.Action, error) {
	all, err := config.BuildActions(cfg, newLogger(stderr, true))
	if err != nil {
		return nil, err
	}
	out := map[string]actions.Action{"log": all["log"]}
	for name, a := range cfg.Actions {
		if keys, ok := config.ActionKeys[a.Type]; ok && slices.Contains(keys, keyType) {
			out[name] = all[name]
		}
	}
	return out, nil
}

// apply runs actions for a detection now, and returns their outcomes.
func apply(d actions.Detection, acts []actions.Action, stderr io.Writer) map[string]string {
	var mu sync.Mutex
	status := map[string]string{}
	x := &actions.Executor{Log: newLogger(stderr, true), Act: true, Record: func(_ int64, a, s string) {
		mu.Lock()
		status[a] = s
		mu.Unlock()
	}}
	x.Dispatch(d, acts)
	x.Wait()
	return status
}

func ban(cfg *config.Config, store *sqlite.Store, key, rule string, d time.Duration, stderr io.Writer) (state.Block, error) {
	keyType := keyTypeOf(key)
	guard := actions.NewGuard(cfg.Ignore)
	var err error
	if strings.HasPrefix(keyType, "client") {
		_, err = guard.Network(key)
	} else {
		err = guard.Sender(keyType, key)
	}
	if err != nil {
		return state.Block{}, usageError{err}
	}
	acts, err := enforcing(cfg, keyType, stderr)
	if err != nil {
		return state.Block{}, err
	}
	snap, err := store.Load()
	if err != nil {
		return state.Block{}, err
	}
	now := time.Now().UTC()
	b := state.Block{ID: snap.NextID, Rule: rule, KeyType: keyType, Key: key, Since: now, Actions: map[string]string{}}
	if d > 0 {
		b.Until = now.Add(d)
	}
	list := slices.Collect(maps.Values(acts))
	slices.SortFunc(list, func(a, b actions.Action) int { return strings.Compare(a.Name(), b.Name()) })
	det := actions.Detection{Event: "block", Time: now, Now: now, BlockID: b.ID, Rule: rule, KeyType: keyType, Key: key, Until: b.Until}
	b.Actions = apply(det, list, stderr)
	if err := store.Commit(&state.Batch{Blocks: []state.Block{b}}); err != nil {
		return b, err
	}
	return b, nil
}

func unban(cfg *config.Config, store *sqlite.Store, key string, stderr io.Writer) ([]state.Block, error) {
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
	batch := &state.Batch{}
	for _, b := range blocks {
		if b.Key != key {
			continue
		}
		var acts []actions.Action
		for name := range b.Actions {
			if a, ok := all[name]; ok {
				acts = append(acts, a)
			}
		}
		apply(actions.Detection{Event: "unblock", Time: now, Now: now, BlockID: b.ID, Rule: b.Rule, KeyType: b.KeyType, Key: b.Key,
			Value: b.Value, Limit: b.Limit, Window: b.Window, Until: b.Until, Reason: "unban"}, acts, stderr)
		batch.Ends = append(batch.Ends, state.End{ID: b.ID, Time: now, Reason: "unban"})
		b.Ended, b.EndReason = now, "unban"
		ended = append(ended, b)
	}
	if len(ended) > 0 {
		if err := store.Commit(batch); err != nil {
			return nil, err
		}
	}
	return ended, nil
}
